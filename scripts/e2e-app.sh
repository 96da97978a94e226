#!/usr/bin/env bash
# End-to-end tests of the desktop app: the real app under WebDriver (tauri-driver +
# WebKitWebDriver) on a virtual display, against real servers and `onstage bot`s.
# Expects the app, the `onstage` command and the UI to be built (scripts/test.sh does it),
# and the packages and the Python venv of scripts/setup.sh.
#   scripts/e2e-app.sh [host|viewer|lan|link ...]      screenshots in target/app-e2e/
# Runs as root: the lan scenario makes a network namespace and a veth pair (and fails,
# not skips, if it cannot).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${E2E_OUT:-$PWD/target/app-e2e}"
PY="${E2E_PYTHON:-$PWD/target/e2e-venv/bin/python}"
rm -rf "$OUT"
mkdir -p "$OUT"
export E2E_OUT="$OUT"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

# A display of our own (another test run may hold :99): Xvfb picks a free number.
exec 5< <(Xvfb -displayfd 1 -screen 0 1280x800x24 -nolisten tcp 2>"$OUT/xvfb.log")
pids+=($!)
read -r -t 20 display <&5 || { echo "e2e-app: Xvfb did not start" >&2; exit 1; }
export DISPLAY=":$display"

# A session bus of our own, so that the app's single-instance hand-over (a second start
# with a link) works as on a desktop, and nothing of the machine's is touched. GTK's
# accessibility bridge is kept off it.
for tool in dbus-daemon dbus-send ip; do
  command -v "$tool" >/dev/null || { echo "e2e-app: $tool is missing (Debian: dbus-daemon, dbus-bin, iproute2)" >&2; exit 1; }
done
bus="$OUT/session-bus"
dbus-daemon --session --nofork --nopidfile --address="unix:path=$bus" 2>"$OUT/dbus.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$bus" ] && break; sleep 0.05; done
[ -S "$bus" ] || { echo "e2e-app: the session bus did not start" >&2; exit 1; }
export DBUS_SESSION_BUS_ADDRESS="unix:path=$bus" NO_AT_BRIDGE=1
# Where the app registers the onstage:// scheme (a desktop entry): the run's own.
export XDG_DATA_HOME="$OUT/xdg-data"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
native="$(free_port)"
# Whatever the app needs from its environment goes through tauri-driver, which starts it.
ONSTAGE_MEDIA=synthetic ONSTAGE_DATA_DIR="$OUT/app-data" RUST_LOG="${RUST_LOG:-info}" \
  tauri-driver --port "$port" --native-port "$native" >"$OUT/tauri-driver.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$port" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
export TAURI_DRIVER_URL="http://127.0.0.1:$port"

started=$(date +%s)
status=0
"$PY" tests/app/e2e.py "$@" || status=$?
echo "e2e-app: $(( $(date +%s) - started )) s, screenshots in $OUT" >&2
exit "$status"
