#pragma once
// What the eBPF backend needs from the process, measured by running the daemon with one
// capability less at a time (tests/kernel/capabilities_test.py).
//
// Destroying a removed endpoint's sockets means entering each client's network namespace
// (socket iterators walk the namespace of the process that creates them), and setns() into a
// network namespace takes CAP_SYS_ADMIN. The kernel accepts CAP_SYS_ADMIN wherever it asks for
// CAP_BPF or CAP_PERFMON, and for loading and attaching network BPF programs where it asks for
// CAP_NET_ADMIN, so with it those three add nothing: the measured set is these two. (Without the
// namespace walk it would be CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: the socket programs are a
// network program type, the stale-socket iterators are tracing programs.) The kernel charges
// BPF memory to the cgroup (5.11 and later): no CAP_SYS_RESOURCE for RLIMIT_MEMLOCK.
// CAP_NET_ADMIN for nftables, which serves the SCTP ports (nft::SctpPorts): nfnetlink asks for
// it whatever else the process holds, and the first sync looks for a previous run's tables.

#include <linux/capability.h>

#include "proxier/core/linux_capabilities.h"

namespace sliceproxy::backends::ebpf {

inline constexpr proxier::LinuxCapability kLinuxCapabilities[] = {
    {CAP_NET_ADMIN, "CAP_NET_ADMIN",
     "nftables for the SCTP service ports (neither eBPF path translates SCTP; the first sync "
     "also removes a previous run's tables)"},
    {CAP_SYS_ADMIN, "CAP_SYS_ADMIN",
     "setns() into the clients' network namespaces to destroy their stale sockets and find "
     "pods' addresses; it also covers loading and attaching the BPF programs (CAP_BPF, "
     "CAP_PERFMON)"},
    {CAP_SYS_PTRACE, "CAP_SYS_PTRACE",
     "opening /proc/PID/ns/net of client processes of other users or with other capabilities"},
};

}  // namespace sliceproxy::backends::ebpf
