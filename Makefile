# The two entry points on a fresh Debian machine:
#   make run   — build and start a local Onstage server with a demo meeting
#   make test  — every test (what CI runs)
.PHONY: run test setup lint

setup:
	bash scripts/setup.sh

run: setup
	bash scripts/run.sh

test: setup
	bash scripts/test.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
