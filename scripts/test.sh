#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, unit, property and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# A test run builds cold and once: incremental caches would only cost disk and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Tauri embeds ui/dist at compile time: build the UI before anything compiles the app.
(cd ui && npm run build)
# The server serves the web Stage SDK's build (web-sdk/dist) and the app for browsers
# (ui/dist-web, at /join): build them before the server.
(cd web-sdk && npm run build)
(cd ui && npm run build:web)

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked
# A short coverage-guided fuzz run of every decoder fed from outside (the corpora were
# replayed above, by the onstage-fuzz tests). FUZZ_SECONDS per target; 0 skips it.
if [ "${FUZZ_SECONDS:-10}" != 0 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi
(cd ui && npm run check && npm test)
(cd web-sdk && npm run check && npm test)

# The desktop app end to end (WebDriver), with the binaries it drives.
cargo build --workspace --locked
bash scripts/e2e-app.sh
# The web Stage SDK in a real browser (headless Chromium) against a server on a LAN host.
bash scripts/e2e-browser.sh
