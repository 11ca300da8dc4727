#pragma once
// This node's IPs as kube-proxy detects them (its detectNodeIPs over client-go's
// GetNodeHostIPs): the first InternalIP of the Node, else its first ExternalIP, then the first
// address of the other family in the same order; a --bind-address / bindAddress that is not
// 0.0.0.0 or :: replaces its family's. What `--nodeport-addresses primary` serves on.

#include <optional>
#include <vector>

#include "proxier/model/ip.h"
#include "proxier/model/node.h"

namespace sliceproxy::proxier {

// At most one address per family, the primary family's first; loopback addresses are left out
// (kube-proxy assumes loopback when it knows nothing, and serves no NodePort there).
// `node` may be null (not seen yet): then only the override, if any.
std::vector<IpAddr> primaryNodeIps(const Node* node, const std::optional<IpAddr>& override);

}  // namespace sliceproxy::proxier
