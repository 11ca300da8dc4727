#!/usr/bin/env bash
# bench_ipvs (bench/ipvs_bench.cpp) in Debian's kernel under qemu, which has IPVS (this host's
# kernel does not): the seed workload cold and one endpoint change, for the IPVS backend,
# kube-proxy's IPVS mechanism and the nftables backend in the same guest.
#   bench/ipvs_vm_bench.sh [BUILD_DIR] [CHANGES] [ENDPOINTS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(realpath "${1:-$here/../build}")"
export SLICEPROXY_VM_BENCH="$build/bench/bench_ipvs" SLICEPROXY_VM_CHANGES="${2:-9}" \
  SLICEPROXY_VM_ENDPOINTS="${3:-100000}"
[ -x "$SLICEPROXY_VM_BENCH" ] || { echo "no $SLICEPROXY_VM_BENCH: build target bench_ipvs" >&2; exit 1; }
SLICEPROXY_QEMU_TIMEOUT="${SLICEPROXY_QEMU_TIMEOUT:-600}" \
  bash "$here/../tests/qemu/vm.sh" --modules "ip_vs ip_vs_rr nf_conntrack dummy" "$here/ipvs_vm_guest.sh"
