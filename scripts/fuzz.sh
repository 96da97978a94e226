#!/usr/bin/env bash
# A bounded coverage-guided fuzz run of every target in fuzz/ (libFuzzer, on the stable
# toolchain): builds the instrumented targets, then runs each for SECONDS (default 10),
# starting from its seed corpus in fuzz/corpus/<target>/ and the reproducers in
# fuzz/regressions/<target>/. Fails on the first crash, printing the input and where to
# save it. Everything the run writes stays under the target dir: the repo is left as it was.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-10}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(signal token rest link sdp datagram tcp)
fi

# Explicit --target: the instrumentation flags then reach our code and its dependencies
# but not build scripts and proc macros (which would not link without libFuzzer).
host="$(rustc -vV | sed -n 's/^host: //p')"
target_root="${CARGO_TARGET_DIR:-target}"
export CARGO_TARGET_DIR="$target_root/fuzz"
# The instrumentation cargo-fuzz uses, spelled out: every flag here is stable. SanitizerCoverage
# with 8-bit counters, a PC table and comparison tracing is what libFuzzer feeds on.
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cdebug-assertions -Coverflow-checks"
# Optimized, as fuzzing wants executions; opt-level 1 builds much faster than 3 for
# nearly the same speed here. Debug assertions and overflow checks stay on (above).
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${FUZZ_OPT_LEVEL:-1}"
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_INCREMENTAL=0

bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "fuzz: building ${targets[*]} (instrumented)" >&2
cargo build --locked --release --target "$host" -p onstage-fuzz --features libfuzzer "${bins[@]}"
bin_dir="$CARGO_TARGET_DIR/$host/release"

work="$CARGO_TARGET_DIR/runs"
mkdir -p "$work"
failed=()
for t in "${targets[@]}"; do
  run="$(mktemp -d "$work/$t.XXXXXX")"
  mkdir -p "$run/corpus" "$run/artifacts"
  seeds=(fuzz/corpus/"$t")
  if [ -d fuzz/regressions/"$t" ]; then seeds+=(fuzz/regressions/"$t"); fi
  echo "fuzz: $t for ${seconds}s" >&2
  # New inputs go to the first corpus dir (the run's own); the seed dirs are only read.
  status=0
  "$bin_dir/$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -max_len=16384 -print_final_stats=1 -artifact_prefix="$run/artifacts/" \
    "$run/corpus" "${seeds[@]}" >"$run/log" 2>&1 || status=$?
  grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' "$run/log" >&2 || true
  crash="$(find "$run/artifacts" -type f | head -n 1)"
  if [ "$status" -ne 0 ] || [ -n "$crash" ]; then
    failed+=("$t")
    tail -n 60 "$run/log" >&2
    if [ -n "$crash" ]; then
      name="$(basename "$crash")"
      echo "fuzz: $t found a crash: $crash" >&2
      echo "fuzz: keep it as a regression test:" >&2
      echo "  mkdir -p fuzz/regressions/$t && cp '$crash' fuzz/regressions/$t/$name" >&2
      echo "fuzz: the input, base64 (for a log whose files are gone):" >&2
      base64 -w 76 "$crash" >&2
    fi
  else
    rm -rf "$run"
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each: no crash" >&2
