#pragma once
// Local-traffic detection (--detect-local-mode): which packets come from this cluster's pods.
// The masquerade decision of a service's rules and the short-circuit of
// externalTrafficPolicy=Local ports both depend on it.

#include "backends/nftnl/rule_builder.h"
#include "backends/node_policy/family.h"
#include "proxier/model/ip.h"

namespace sliceproxy::backends::nft {

// Adds to `b` a match of traffic that comes from pods (or, with `negate`, that does not), by
// the configured detection mode. `nodePodCIDR` is the Node's pod CIDR of this family, for
// NodeCIDR mode. Returns false, adding nothing, when no mode is configured or the mode lacks
// its input: then nothing is known to be local.
bool matchLocalTraffic(RuleBuilder& b, const NodeFamily& fam, const proxier::Cidr* nodePodCIDR,
                       bool negate);

}  // namespace sliceproxy::backends::nft
