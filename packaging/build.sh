#!/usr/bin/env bash
# Configures and builds one flavour of sliceproxy. Usage: packaging/build.sh [release|sanitize|fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
jobs=$(nproc)
case "$flavour" in
  release)
    # Unity batches: a third less compile time for a cold build (CMakeLists.txt).
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_UNITY_BUILD=ON >/dev/null
    cmake --build build -j "$jobs"
    ;;
  sanitize)
    # Unit tests only: the sanitizer build skips benchmarks.
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSLICEPROXY_SANITIZE=ON \
      -DCMAKE_UNITY_BUILD=ON >/dev/null
    cmake --build build-asan -j "$jobs" --target unit_tests
    ;;
  fuzz)
    # The libFuzzer targets of tests/fuzz/ (issue 18): clang, ASan + UBSan, decoders only.
    cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLICEPROXY_FUZZ=ON \
      -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
    cmake --build build-fuzz -j "$jobs"
    ;;
  *)
    echo "usage: $0 [release|sanitize|fuzz]" >&2
    exit 2
    ;;
esac
