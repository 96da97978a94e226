#!/usr/bin/env bash
# The CPU of a simulcast publisher: `onstage bot --media synthetic --video 1280x720@30`
# on stage against `onstage serve` on loopback, with one viewer bot per tile size given
# (each tells the SFU it shows the speaker at that size, so the SFU names the layers they
# take and the speaker encodes only those). Reads the speaker's user + system CPU from
# /proc over SECONDS after WARMUP and prints it in cores, then the speaker's layers
# (media.stats: rate, 0 when not encoded, and frames) and what each viewer decodes.
#   scripts/publisher-cpu.sh on|off TILES [SECONDS] [WARMUP]
#   e.g. scripts/publisher-cpu.sh on 320x180,640x360,1280x720 30 15   (three layers taken)
#        scripts/publisher-cpu.sh off 1280x720                       (one stream)
# Expects `cargo build --release -p onstage` (or BIN=path/to/onstage), jq and bc.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/onstage}
SIMULCAST=$1 TILES=$2 SECONDS_=${3:-30} WARMUP=${4:-10}
DIR=$(mktemp -d)
export ONSTAGE_ADMIN_KEY=publisher-cpu-admin-key-0123456789abcdef
SERVE="" VIEWERS="" SPEAKER="" FDS=""
cleanup() {
  # The bots read stdin on a blocking thread: they exit once their stdin is closed.
  exec 3>&- 2>/dev/null || true
  for fd in $FDS; do eval "exec $fd>&-"; done
  # shellcheck disable=SC2086
  kill $SERVE $VIEWERS $SPEAKER 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
"$BIN" serve --listen 127.0.0.1:0 --data "$DIR/data" >"$DIR/serve.out" 2>"$DIR/serve.err" &
SERVE=$!
for _ in $(seq 100); do grep -q listening "$DIR/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(head -1 "$DIR/serve.out" | jq -r .http)
MEETING=$("$BIN" meeting create --server "$URL" --title publisher-cpu | jq -r .id)
token() {
  "$BIN" participant add --server "$URL" --meeting "$MEETING" --name "$1" --preset "$2" |
    jq -r .token
}
n=0
for tile in ${TILES//,/ }; do
  n=$((n + 1))
  mkfifo "$DIR/viewer$n.in"
  "$BIN" bot --server "$URL" --token "$(token "Viewer$n" viewer)" --media synthetic \
    --tiles "$tile" <"$DIR/viewer$n.in" >"$DIR/viewer$n.out" 2>"$DIR/viewer$n.err" &
  VIEWERS="$VIEWERS $!"
  exec {fd}>"$DIR/viewer$n.in"
  FDS="$FDS $fd"
done
mkfifo "$DIR/speaker.in"
"$BIN" bot --server "$URL" --token "$(token Speaker speaker)" --media synthetic \
  --video 1280x720@30 --simulcast "$SIMULCAST" \
  <"$DIR/speaker.in" >"$DIR/speaker.out" 2>"$DIR/speaker.err" &
SPEAKER=$!
exec 3>"$DIR/speaker.in"
echo '{"id":1,"call":"stage.join"}' >&3
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleep "$WARMUP"
C0=$(cpu "$SPEAKER") T0=$(date +%s.%N)
sleep "$SECONDS_"
C1=$(cpu "$SPEAKER") T1=$(date +%s.%N)
echo '{"id":2,"call":"media.stats"}' >&3
for fd in $FDS; do echo '{"id":2,"call":"media.stats"}' >&"$fd"; done
sleep 1
CORES=$(echo "($C1 - $C0) / $(getconf CLK_TCK) / ($T1 - $T0)" | bc -l)
printf 'simulcast %s, viewers at %s: %.3f cores over %s s (load average %s)\n' \
  "$SIMULCAST" "$TILES" "$CORES" "$SECONDS_" "$(cut -d' ' -f1 /proc/loadavg)"
jq -c 'select(.id==2) | {speaker: [.result.layers[]? | {rid, bitrate_bps, frames_encoded}]}' \
  "$DIR/speaker.out"
for f in "$DIR"/viewer[0-9]*.out; do
  jq -c 'select(.id==2) | {viewer: [.result.received[] | {width, height, fps, freezes}]}' "$f"
done
