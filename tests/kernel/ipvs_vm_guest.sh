#!/bin/sh
# Runs inside the qemu guest (tests/qemu/vm.sh, Debian's kernel with IPVS): the IPVS backend's
# kernel tests. CTest kernel_ipvs_backend_vm.
#   SLICEPROXY_VM_IPVS_TESTS  the ipvs_kernel_tests binary
set -eu
ip link set lo up
echo "IPVS kernel tests in the guest: kernel $(uname -r)"
exec "${SLICEPROXY_VM_IPVS_TESTS:?SLICEPROXY_VM_IPVS_TESTS names the ipvs_kernel_tests binary}" "$@"
