#!/bin/sh
# Runs inside the qemu guest (tests/qemu/vm.sh): the socket load-balancing kernel tests on
# Debian 12's kernel (6.1), the oldest the eBPF backend supports. CTest kernel_ebpf_sock_lb_vm.
#   SLICEPROXY_VM_EBPF_TESTS  the ebpf_kernel_tests binary
# Left out: the stale-socket tests (bpf_sock_destroy is Linux 6.5+; on 6.1 the backend reports
# that gap instead) and the 100,000-endpoint timing test (its figures mean nothing under
# emulation).
set -eu
ip link set lo up
# The guest's /sys is its own: it has no cgroup2 mount until this one.
mount -t cgroup2 none /sys/fs/cgroup
echo "eBPF socket LB kernel tests in the guest: kernel $(uname -r)"
exec "${SLICEPROXY_VM_EBPF_TESTS:?SLICEPROXY_VM_EBPF_TESTS names the ebpf_kernel_tests binary}" \
  --gtest_filter='-*IsDestroyed*:*IsDestroyedToo:*IsAbortedEstablishedIsKept:*OneHundredThousandEndpoints*' "$@"
