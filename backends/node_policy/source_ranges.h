#pragma once
// loadBalancerSourceRanges: a port with load-balancer IPs and source ranges gets a chain
// fw-<id>-<tag> in the main table; the firewall-ips map sends new connections to its
// load-balancer IPs there, and the chain drops every source outside the ranges.

#include <cstdint>
#include <string>

#include "backends/nftnl/transaction.h"
#include "proxier/core/service_port.h"

namespace sliceproxy::backends::nft {

// The port's firewall chain name, or empty when the port needs none. `tag` is portChainTag().
std::string firewallChainName(uint32_t id, const std::string& tag,
                              const proxier::ServicePortInfo& info);

// Adds the rules of firewall chain `chain` (which must exist in the main table and be empty).
void addFirewallRules(Transaction& tx, const proxier::ServicePortInfo& info,
                      const std::string& chain);

}  // namespace sliceproxy::backends::nft
