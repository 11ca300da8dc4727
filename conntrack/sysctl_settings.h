#pragma once
// KubeProxyConfiguration `conntrack` (and the --conntrack-* flags) applied to the kernel as
// kube-proxy applies them: nf_conntrack_max = max(maxPerCore x CPUs, min) with the hash table a
// quarter of that (raised only: a higher limit an administrator set stays), and the TCP/UDP
// timeouts, each written only when it differs from the kernel's value. A read-only /proc/sys or
// /sys (containers without privileges) is logged and skipped, as kube-proxy does; nothing else
// stops the daemon.

#include <cstdint>
#include <string>
#include <vector>

#include "proxier/config/config.h"

namespace sliceproxy::conntrack {

struct SysctlWrite {
  std::string path;  // relative to the sysctl root, e.g. net/netfilter/nf_conntrack_max
  int64_t value;
  std::string setting;  // the configuration field it comes from, for messages
};

// What the settings ask for on a host with `cpus` CPUs (hashsize excluded: see below).
std::vector<SysctlWrite> plannedSysctls(const proxier::ConntrackSettings& s, int cpus);

struct ApplyReport {
  std::vector<std::string> written, unchanged, failed;
  // A sysctl that did not exist (nf_conntrack not loaded yet): apply again later.
  bool missing = false;
};

// Applies the plan under `sysctlRoot` (normally /proc/sys) and raises the conntrack hash table
// through `hashsizePath` when it is smaller than nf_conntrack_max / 4.
ApplyReport applyConntrackSettings(
    const proxier::ConntrackSettings& s, int cpus, const std::string& sysctlRoot = "/proc/sys",
    const std::string& hashsizePath = "/sys/module/nf_conntrack/parameters/hashsize");

}  // namespace sliceproxy::conntrack
