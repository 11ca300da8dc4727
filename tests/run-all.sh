#!/usr/bin/env bash
# README command 2 (and CI): install, build, run every test, then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzz targets for a bounded run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
start=$(date +%s)

bash packaging/build.sh release

# The sanitizer and fuzz builds compile while CTest runs, at idle priority (SCHED_IDLE): most of
# the suite waits on the kernel, timers and guests rather than the CPU, and an idle-priority task
# gives way the moment a test's process wants a core, so the tests keep the machine they measure
# on. This saves their whole build time on a 2-core machine.
side_log=build/side-builds.log
# setsid: its own process group, so that an early exit stops the compilers too.
setsid chrt --idle 0 bash -c 'bash packaging/build.sh sanitize && bash packaging/build.sh fuzz' \
  >"$side_log" 2>&1 &
side=$!
trap 'kill -- -"$side" 2>/dev/null || true' EXIT

# A failure ends the script here (set -e); the trap stops the side builds.
# The qemu guests first and alone, two at a time: each emulates its CPU in software on one host
# core, and a host test beside them (an image build) slowed a guest enough to fail its probes.
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 600 -L vm
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
