#!/usr/bin/env bash
# Configures and builds one flavour of sliceproxy. Usage: packaging/build.sh [release|sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
jobs=$(nproc)
case "$flavour" in
  release)
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j "$jobs"
    ;;
  sanitize)
    # Unit tests only: the sanitizer build skips benchmarks.
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSLICEPROXY_SANITIZE=ON >/dev/null
    cmake --build build-asan -j "$jobs" --target unit_tests
    ;;
  *)
    echo "usage: $0 [release|sanitize]" >&2
    exit 2
    ;;
esac
