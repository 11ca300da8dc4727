#pragma once
// The keys of the frontend maps, in the main table's policy maps and in a backend's own maps
// alike: `daddr . proto . dport` for service addresses and `proto . dport` for NodePorts. How a
// rule loads them from the packet into registers, and how an element spells them.

#include "backends/nftnl/elements.h"
#include "backends/nftnl/rule_builder.h"
#include "backends/node_policy/family.h"

namespace sliceproxy::backends::nft {

// Loads daddr . l4proto . dport into the registers from reg32(0).
void loadFrontend(RuleBuilder& b, const NodeFamily& fam);
// Loads l4proto . dport into the registers from reg32(0).
void loadNodePort(RuleBuilder& b);

inline Bytes frontendKey(const proxier::IpAddr& a, proxier::Protocol proto, uint16_t port) {
  return Bytes().addr(a).proto(proto).port(port);
}
inline Bytes nodePortKey(proxier::Protocol proto, uint16_t port) {
  return Bytes().proto(proto).port(port);
}

}  // namespace sliceproxy::backends::nft
