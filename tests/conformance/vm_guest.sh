#!/bin/sh
# Runs inside the qemu guest (tests/qemu/vm.sh, Debian's kernel): the conformance cases whose
# probes need what this machine's kernel lacks (test_conformance.KERNEL_NEEDS), against the
# guest's kernel, which must offer it. CTest conformance_sctp_vm. Arguments go to
# test_conformance.py.
#   SLICEPROXY_VM_PYTHON        the Python interpreter (CTest's; the guest's PATH is a plain one)
#   SLICEPROXY_VM_BIN           the sliceproxy binary
#   SLICEPROXY_VM_BACKEND       the backend (default nftables)
#   SLICEPROXY_VM_KERNEL_CASES  which cases (default sctp; "all": every case, for a backend the
#                               host kernel cannot run at all)
#   SLICEPROXY_VM_SCRIPT        the suite's script in this directory (default test_conformance.py)
#   SLICEPROXY_VM_STREAM_SCALE  factor on the traffic streams' rates (default 0.25, see below)
#   SLICEPROXY_VM_TIMEOUT_SCALE factor on the probes' answer timeouts (default 3, see below)
set -eu
ip link set lo up
export SLICEPROXY_BIN="${SLICEPROXY_VM_BIN:?SLICEPROXY_VM_BIN names the sliceproxy binary}"
export SLICEPROXY_BACKEND="${SLICEPROXY_VM_BACKEND:-nftables}"
export SLICEPROXY_CONFORMANCE_KERNEL_CASES="${SLICEPROXY_VM_KERNEL_CASES:-sctp}"
[ "$SLICEPROXY_CONFORMANCE_KERNEL_CASES" = all ] && SLICEPROXY_CONFORMANCE_KERNEL_CASES=""
# The guest has one emulated CPU: the restart test's streams at full rate (50 connections/s from
# Python agents, a thread each) leave it no idle time, connects take 1-2 s and new pods 35 s to
# start, so probes time out with or without a restart. A quarter of the rate (5/5/2.5 per
# second) leaves room and still shows a gap of a few hundred milliseconds.
export SLICEPROXY_CONFORMANCE_STREAM_SCALE="${SLICEPROXY_VM_STREAM_SCALE:-0.25}"
# A probe waits 1.5 s (TCP) or 1 s (UDP) for its answer, ample on the host; in an emulated guest
# beside another one on a loaded CI machine a handshake plus the Python agent's turn took longer
# and a slow answer failed a case. Expected drops keep the short wait.
export SLICEPROXY_CONFORMANCE_TIMEOUT_SCALE="${SLICEPROXY_VM_TIMEOUT_SCALE:-3}"
echo "conformance in the guest: kernel $(uname -r), backend $SLICEPROXY_BACKEND, cases needing $SLICEPROXY_CONFORMANCE_KERNEL_CASES"
exec "${SLICEPROXY_VM_PYTHON:-python3}" "$(dirname "$0")/${SLICEPROXY_VM_SCRIPT:-test_conformance.py}" -v "$@"
