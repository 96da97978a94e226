#!/usr/bin/env bash
# The web Stage SDK in a real browser: headless Chromium (chromedriver) against a real
# server on a second LAN host (a network namespace) and `onstage bot`s.
# Expects the `onstage` command and web-sdk/dist to be built (scripts/test.sh does it), and
# the packages and the Python venv of scripts/setup.sh. Runs as root (the namespace).
#   scripts/e2e-browser.sh [viewer|speaker ...]
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${E2E_PYTHON:-$PWD/target/e2e-venv/bin/python}"
for tool in chromium chromedriver ip; do
  command -v "$tool" >/dev/null || { echo "e2e-browser: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
exec "$PY" tests/browser/e2e.py "$@"
