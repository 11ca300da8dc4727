#!/usr/bin/env bash
# README command 2 (and CI): install, build, run every test, then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzz targets for a bounded run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
start=$(date +%s)

bash packaging/build.sh release
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 600

bash packaging/build.sh sanitize
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ./build-asan/tests/unit_tests --gtest_brief=1

# Every decoder of outside input under libFuzzer (clang, ASan + UBSan): a bounded number of
# executions per target (tests/fuzz/).
bash packaging/build.sh fuzz
ctest --test-dir build-fuzz -L fuzz --output-on-failure -j "$(nproc)"

echo "all tests passed in $(( $(date +%s) - start ))s"
