#!/usr/bin/env bash
# The browser client in a real browser: headless Chromium (chromedriver) against a real
# server on a second LAN host (a network namespace) and `onstage bot`s — the web Stage SDK
# on a test page (tests/browser/e2e.py), then the Onstage app the server serves at /join
# (tests/browser/app.py), then Chromium's WebRTC against the SFU on an impaired link: loss,
# blackout, a rate limit, no UDP, mDNS names (tests/browser/recovery.py).
# Expects the `onstage` command, web-sdk/dist and ui/dist-web to be built (scripts/test.sh
# does it), and the packages and the Python venv of scripts/setup.sh. Runs as root (the
# namespace).
#   scripts/e2e-browser.sh                 every scenario
#   scripts/e2e-browser.sh e2e viewer ...  scenarios of one file (e2e, app or recovery)
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${E2E_PYTHON:-$PWD/target/e2e-venv/bin/python}"
for tool in chromium chromedriver ip; do
  command -v "$tool" >/dev/null || { echo "e2e-browser: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
if [ $# -gt 0 ]; then
  file="$1"
  shift
  exec "$PY" "tests/browser/$file.py" "$@"
fi
# Every file runs even when one before it failed; the run fails if any did.
status=0
"$PY" tests/browser/e2e.py || status=1
"$PY" tests/browser/app.py || status=1
"$PY" tests/browser/recovery.py || status=1
exit "$status"
