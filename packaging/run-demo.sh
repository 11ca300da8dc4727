#!/usr/bin/env bash
# README command 1: install, build, and run sliceproxy on the bundled example cluster.
# The dry-run backend prints, as JSON lines on stdout, what it would program: first the full
# state, then one line per change when a file in the manifest directory is edited.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
bash packaging/build.sh release
demo_dir=${SLICEPROXY_DEMO_DIR:-/tmp/sliceproxy-demo}
mkdir -p "$demo_dir"
cp -n examples/*.yaml examples/*.json "$demo_dir"/ 2>/dev/null || true
echo "sliceproxy demo: manifests in $demo_dir; edit them in another shell and watch the diffs; Ctrl-C stops." >&2
exec ./build/sliceproxy --backend dry-run --source-dir "$demo_dir" --hostname-override node-a "$@"
