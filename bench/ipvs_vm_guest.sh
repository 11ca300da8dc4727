#!/bin/sh
# Runs inside the qemu guest (bench/ipvs_vm_bench.sh): bench_ipvs against Debian's kernel.
set -eu
ip link set lo up
exec "${SLICEPROXY_VM_BENCH:?SLICEPROXY_VM_BENCH names bench_ipvs}" "${SLICEPROXY_VM_CHANGES:-9}" \
  "${SLICEPROXY_VM_ENDPOINTS:-100000}"
