#pragma once
// `sliceproxy cleanup-kube-proxy`: removes what kube-proxy left on a node, and only that, so the
// node can be handed to sliceproxy: its iptables chains (KUBE-*, iptables-nft and
// iptables-legacy, IPv4 and IPv6) and the rules jumping to them, its nftables tables
// (ip/ip6 kube-proxy), its IPVS virtual services and kube-ipvs0 dummy, and its KUBE-* ipsets.

#include <string>
#include <vector>

#include "proxier/model/ip.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

struct Options {
  // IPVS virtual services whose address is in one of these stay (kube-proxy's
  // --ipvs-exclude-cidrs, which marks services kube-proxy itself never touches).
  std::vector<proxier::Cidr> ipvsExcludeCIDRs;
  // Remove IPVS virtual services even when kube-ipvs0 is absent (no sign that kube-proxy ran in
  // IPVS mode here, so by default they are someone else's).
  bool ipvsWithoutKubeIpvs0 = false;
};

struct Report {
  std::vector<std::string> removed;  // what was deleted
  std::vector<std::string> found;    // what was looked at and left, or found absent
  std::vector<std::string> errors;   // "removing <what>: <why>"
  bool ok() const { return errors.empty(); }
};

Report cleanupKubeProxy(const Options& opts);

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
