#pragma once
// What the eBPF backend needs from the process, measured by running the daemon with one
// capability less at a time (tests/kernel/capabilities_test.py). Nothing here needs
// CAP_SYS_ADMIN for loading or attaching (kernel 5.8 and later); only entering the clients'
// network namespaces does. The kernel charges BPF memory to the cgroup (5.11 and later), so
// no CAP_SYS_RESOURCE for RLIMIT_MEMLOCK either.

#include <linux/capability.h>

#include "proxier/core/linux_capabilities.h"

namespace sliceproxy::backends::ebpf {

inline constexpr proxier::LinuxCapability kLinuxCapabilities[] = {
    {CAP_BPF, "CAP_BPF", "loading the BPF programs and creating their maps"},
    {CAP_NET_ADMIN, "CAP_NET_ADMIN",
     "loading and attaching the cgroup socket programs (a network program type)"},
    {CAP_PERFMON, "CAP_PERFMON", "loading the stale-socket iterators, which are tracing programs"},
    {CAP_SYS_ADMIN, "CAP_SYS_ADMIN",
     "setns() into the clients' network namespaces to destroy their stale sockets"},
    {CAP_SYS_PTRACE, "CAP_SYS_PTRACE",
     "opening /proc/PID/ns/net of client processes with other users or capabilities"},
};

}  // namespace sliceproxy::backends::ebpf
