#!/usr/bin/env bash
# README command 1: install, build, then run sliceproxy on the bundled example cluster inside a
# sandbox of network namespaces (an outside client, node-a where sliceproxy runs, node-b, one
# namespace per pod). It sends traffic to every example service, prints which pod answered and
# which source address it saw, then waits: edit the manifests in the directory it prints and the
# table is printed again. Ctrl-C tears the sandbox down.
#   SLICEPROXY_DEMO_BACKEND=dry-run   backend to use (default nftables)
#   SLICEPROXY_DEMO_DIR=DIR           manifest directory to use (default: a temporary copy)
# Extra arguments go to sliceproxy, after "--": bash packaging/run-demo.sh -- --masquerade-all
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
bash packaging/build.sh release
if [ "$(id -u)" -ne 0 ]; then
  echo "run-demo: run as root (network namespaces and nftables)" >&2
  exit 1
fi
exec python3 tests/conformance/demo.py --binary build/sliceproxy --examples examples "$@"
