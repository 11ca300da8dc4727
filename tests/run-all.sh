#!/usr/bin/env bash
# README command 2 (and CI): install, build, run every test, then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzz targets for a bounded run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
start=$(date +%s)

bash packaging/build.sh release

# The qemu guests first and alone, two at a time: each emulates its CPU in software on one host
# core, and anything beside them (a host test, even a compiler at idle priority, which takes the
# moments a guest waits and evicts its caches) slows a guest enough to fail its probes.
# A failure ends the script here (set -e).
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 600 -L vm

# The sanitizer and fuzz builds compile while the host tests run, at idle priority (SCHED_IDLE):
# most of those tests wait on the kernel and timers rather than the CPU, and an idle-priority
# task gives way the moment a test's process wants a core.
side_log=build/side-builds.log
# setsid: its own process group, so that an early exit stops the compilers too.
setsid chrt --idle 0 bash -c 'bash packaging/build.sh sanitize && bash packaging/build.sh fuzz' \
  >"$side_log" 2>&1 &
side=$!
trap 'kill -- -"$side" 2>/dev/null || true' EXIT

# A failure ends the script here (set -e); the trap stops the side builds.
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 600 -LE vm

side_rc=0
wait "$side" || side_rc=$?
trap - EXIT
if [ "$side_rc" -ne 0 ]; then
  tail -n 60 "$side_log" >&2
  echo "the sanitizer or fuzz build failed (full log: $side_log)" >&2
  exit "$side_rc"
fi

ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ./build-asan/tests/unit_tests --gtest_brief=1

# Every decoder of outside input under libFuzzer (clang, ASan + UBSan): a bounded number of
# executions per target (tests/fuzz/).
ctest --test-dir build-fuzz -L fuzz --output-on-failure -j "$(nproc)"

echo "all tests passed in $(( $(date +%s) - start ))s"
