#!/usr/bin/env bash
# Runs one fuzz target for a bounded number of executions: the seeds first (each must pass),
# then new inputs mutated from them. Any crash, leak, sanitizer report or timeout fails the test,
# and libFuzzer writes the input that caused it to the working directory.
# Usage: run_target.sh BINARY SEED_DIR RUNS [extra libFuzzer flags]
# FUZZ_CORPUS=DIR keeps the inputs the run found in DIR (created if missing), so that a long
# campaign can go on where its last run stopped; without it they go to
# ${TMPDIR:-/tmp}/sliceproxy-fuzz.BINARY, emptied first.
set -euo pipefail
bin=$1 seeds=$2 runs=$3
shift 3
[ -d "$seeds" ] && [ -n "$(ls -A "$seeds")" ] || { echo "no seeds in $seeds" >&2; exit 1; }
# Inputs that once failed (tests/fuzz/regressions/NAME) are replayed with the seeds.
regressions="$(dirname "$(dirname "$seeds")")/regressions/$(basename "$seeds")"
[ -d "$regressions" ] || regressions=
if [ -n "${FUZZ_CORPUS:-}" ]; then
  corpus=$FUZZ_CORPUS
else
  # One fixed directory per target, emptied first: exec leaves no shell behind to remove a
  # fresh one, and exec is what lets CTest's and timeout's signals reach the fuzzer itself.
  corpus="${TMPDIR:-/tmp}/sliceproxy-fuzz.$(basename "$bin")"
  rm -rf "$corpus"
fi
mkdir -p "$corpus"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec nice -n 5 "$bin" -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$@" "$corpus" "$seeds" ${regressions:+"$regressions"}
