#!/bin/sh
# Runs inside the qemu guest (tests/qemu/vm.sh, Debian's kernel with IPVS): the least-privilege
# test of the IPVS backend (tests/kernel/capabilities_test.py with SLICEPROXY_CAP_BACKENDS=ipvs).
# CTest kernel_capabilities_ipvs_vm.
#   SLICEPROXY_VM_PYTHON       the Python interpreter
#   SLICEPROXY_VM_BIN          the sliceproxy binary
#   SLICEPROXY_VM_TESTING_BIN  the sliceproxy-testing binary
set -eu
ip link set lo up
export SLICEPROXY_BIN="${SLICEPROXY_VM_BIN:?SLICEPROXY_VM_BIN names the sliceproxy binary}"
export SLICEPROXY_TESTING_BIN="${SLICEPROXY_VM_TESTING_BIN:?SLICEPROXY_VM_TESTING_BIN names sliceproxy-testing}"
export SLICEPROXY_CAP_BACKENDS=ipvs
# Under software emulation a start takes seconds, not tenths of one.
export SLICEPROXY_CAP_START_TIMEOUT=60
echo "least privilege in the guest: kernel $(uname -r), backend ipvs"
exec "${SLICEPROXY_VM_PYTHON:-python3}" "$(dirname "$0")/capabilities_test.py" -v "$@"
