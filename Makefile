# The two entry points on a fresh Debian machine:
#   make run         — build and open the desktop app, hosting a meeting (embedded server)
#   make run-server  — build and start a standalone server with a demo meeting
#   make test        — every test (what CI runs)
.PHONY: run run-server test e2e-app setup lint

setup:
	bash scripts/setup.sh

run: setup
	bash scripts/run.sh

run-server: setup
	bash scripts/run.sh server

test: setup
	bash scripts/test.sh

# The desktop app's WebDriver tests alone (after a build).
e2e-app: setup
	(cd ui && npm run build && npm run build:web)
	(cd web-sdk && npm run build)
	cargo build --workspace --locked
	bash scripts/e2e-app.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
