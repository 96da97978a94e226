#!/usr/bin/env bash
# Installs what building and testing Onstage needs on a fresh Debian machine.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail

APT_PACKAGES=(
  # build-essential also compiles libFuzzer (the libfuzzer-sys crate) for scripts/fuzz.sh.
  build-essential pkg-config cmake nasm libclang-dev libssl-dev libasound2-dev
  # The desktop app (Tauri 2 on WebKitGTK) and its end-to-end tests (virtual display,
  # WebDriver, screenshots).
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev
  xvfb xauth webkit2gtk-driver imagemagick python3-venv
  # The app's onstage:// scheme (a desktop entry made the default handler) and the session
  # bus its single-instance hand-over uses; the e2e run starts its own bus.
  dbus-daemon dbus-bin xdg-utils
  # The network lab (namespaces, NAT and firewall rules) and its TURN relay.
  iproute2 iptables coturn
  # The peer SFU the load test compares ours with (`onstage load-test --compare janus`).
  janus
  # The cluster's registry and home locks (crates/cluster) and its tests' Redis.
  redis-server
  # The browser client's tests: a real Chromium (libwebrtc), headless, through WebDriver.
  chromium chromium-driver
  # Real audio devices without a sound card: a private PulseAudio with null sinks, reached
  # through ALSA's default device (the real-audio tests and `onstage bot --media devices`).
  pulseaudio pulseaudio-utils libasound2-plugins
)
if ! command -v npm >/dev/null 2>&1; then
  APT_PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

cd "$(dirname "$0")/.."

# The web UI: Node 18 or newer (Vite), its packages pinned by ui/package-lock.json.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 18 ]; then
  echo "setup: Node.js 18 or newer is needed for the UI (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
if [ -f ui/package-lock.json ] && { [ ! -f ui/node_modules/.package-lock.json ] ||
  [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; }; then
  # `npm ci`: exactly the lock (which lists every platform's build of rollup's native
  # package), never rewriting it, so a test run leaves the work tree clean.
  echo "setup: npm ci in ui/" >&2
  (cd ui && npm ci --no-audit --no-fund)
fi

# The web Stage SDK (the server embeds its build; its tests run in Node).
if [ -f web-sdk/package-lock.json ] && { [ ! -f web-sdk/node_modules/.package-lock.json ] ||
  [ web-sdk/package-lock.json -nt web-sdk/node_modules/.package-lock.json ]; }; then
  echo "setup: npm ci in web-sdk/" >&2
  (cd web-sdk && npm ci --no-audit --no-fund)
fi

# WebDriver for the app's end-to-end tests.
if ! command -v tauri-driver >/dev/null 2>&1; then
  echo "setup: installing tauri-driver" >&2
  cargo install tauri-driver --version '^2' --locked
fi
venv=target/e2e-venv
if ! "$venv/bin/python" -c 'import selenium' >/dev/null 2>&1; then
  echo "setup: Python venv with selenium in $venv" >&2
  mkdir -p target
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'selenium>=4,<5'
fi
