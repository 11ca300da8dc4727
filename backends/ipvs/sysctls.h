#pragma once
// The sysctls kube-proxy's IPVS mode sets, set the same way and each one logged.

#include <string>

namespace sliceproxy::backends::ipvs {

// net.ipv4.vs.conntrack=1 (IPVS connections get conntrack entries, so nftables can masquerade
// them), expire_nodest_conn=1 and expire_quiescent_template=1 (connections to a deleted or
// weight-0 real server end instead of hanging), conn_reuse_mode=0 only on kernels older than 5.9
// (where 1 delays reused ports by a second), arp_ignore=1 / arp_announce=2 (the node does not
// answer ARP for the service addresses on its dummy link). Returns "" or the first failure.
std::string applyIpvsSysctls(const std::string& procRoot = "/proc/sys");

}  // namespace sliceproxy::backends::ipvs
