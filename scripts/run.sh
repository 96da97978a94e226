#!/usr/bin/env bash
# The main job.
#   scripts/run.sh          build and open the desktop app, hosting a meeting on its
#                           embedded server (the host view; invite people from there)
#   scripts/run.sh server   build and start a standalone server with a demo meeting and
#                           print how to join it; Ctrl-C stops it
set -euo pipefail
cd "$(dirname "$0")/.."

# Every server (the app's embedded one too) serves the web Stage SDK's build and the app
# for browsers (/join, ui/dist-web).
(cd web-sdk && npm run build)
(cd ui && npm run build:web)

if [ "${1:-app}" != server ]; then
  # Tauri embeds ui/dist at compile time: the UI is built first.
  (cd ui && npm run build)
  cargo build --locked --bin onstage-app
  if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "run: no display (DISPLAY / WAYLAND_DISPLAY); for a headless machine use: make run-server" >&2
    exit 1
  fi
  # Real camera and microphone unless ONSTAGE_MEDIA=synthetic; a missing device shows as
  # such in the app.
  ONSTAGE_AUTOSTART="${ONSTAGE_AUTOSTART:-host}" exec target/debug/onstage-app "$@"
fi

LISTEN="${ONSTAGE_LISTEN:-127.0.0.1:8080}"
DATA="${ONSTAGE_DATA:-$PWD/.onstage-data}"

cargo build --locked --bin onstage
ONSTAGE=target/debug/onstage
mkdir -p "$DATA"

fifo="$(mktemp -u)"
mkfifo "$fifo"
"$ONSTAGE" serve --listen "$LISTEN" --data "$DATA" >"$fifo" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$fifo"' EXIT INT TERM
exec 3<"$fifo"
read -r ready <&3

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }
URL="$(field "$ready" http)"
KEY="$(field "$ready" admin_key)"
if [ -n "$KEY" ]; then export ONSTAGE_ADMIN_KEY="$KEY"; fi
if [ -z "${ONSTAGE_ADMIN_KEY:-}" ] && [ -f "$DATA/admin_key" ]; then
  ONSTAGE_ADMIN_KEY="$(cat "$DATA/admin_key")"; export ONSTAGE_ADMIN_KEY
fi

MEETING="$(field "$("$ONSTAGE" meeting create --server "$URL" --title "Demo stage")" id)"
HOST="$("$ONSTAGE" participant add --server "$URL" --meeting "$MEETING" --name Host --preset host)"
VIEWER="$("$ONSTAGE" participant add --server "$URL" --meeting "$MEETING" --name Viewer --preset viewer)"

cat <<EOT

Onstage is running at $URL (data in $DATA)
Demo meeting: $MEETING

Join as the host (type calls as JSON lines, e.g. {"id":1,"call":"stage.getAccessRequests"}):
  $ONSTAGE bot --server $URL --token $(field "$HOST" token)

Join as a viewer (e.g. {"id":1,"call":"stage.requestAccess"}):
  $ONSTAGE bot --server $URL --token $(field "$VIEWER" token)

Or watch in a browser (camera and microphone need https or localhost):
  $(field "$VIEWER" web_link)

More participants:
  ONSTAGE_ADMIN_KEY=$ONSTAGE_ADMIN_KEY $ONSTAGE participant add --server $URL --meeting $MEETING --name NAME --preset viewer

Ctrl-C stops the server; meetings and tokens are kept in $DATA.
EOT
# Keep relaying the server's stdout until it exits.
cat <&3 &
wait "$server"
