#pragma once
// Which local addresses accept NodePorts (--nodeport-addresses): as rule matches, for the main
// table's no-endpoint checks and a backend's own NodePort dispatch alike.

#include <functional>
#include <string>
#include <vector>

#include "backends/nftnl/rule_builder.h"
#include "backends/nftnl/transaction.h"
#include "backends/node_policy/family.h"
#include "proxier/core/diff.h"

namespace sliceproxy::backends::nft {

// Matches of the local addresses that accept NodePorts: every local address but loopback (as
// kube-proxy's nftables mode), or the local addresses inside the --nodeport-addresses CIDRs (one
// rule per CIDR, so addresses added to interfaces later are covered), or the node's primary IPs
// for "primary" (in the table's nodeport-ips set). A rule per match. `fam` must outlive them.
std::vector<std::function<void(RuleBuilder&)>> nodePortMatches(const NodeFamily& fam);

// Creates set nodeport-ips in `table`, filled with the node's primary IPs under
// --nodeport-addresses=primary (empty otherwise).
void addNodePortIps(Transaction& tx, const NodeFamily& fam, const std::string& table,
                    const proxier::NodeContext* node);

}  // namespace sliceproxy::backends::nft
