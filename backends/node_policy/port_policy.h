#pragma once
// A service port's elements in the main table's policy maps: reject or drop when it has no
// usable endpoints, and the jump to its firewall chain. Independent of how the backend
// load-balances: it needs only the port, how many endpoints each kind of traffic can use, and
// the firewall chain's name.

#include <cstdint>
#include <string>
#include <vector>

#include "backends/nftnl/elements.h"
#include "proxier/core/service_port.h"

namespace sliceproxy::backends::nft {

struct PortEndpointCounts {
  bool hasAny = false;    // the service has endpoints somewhere, usable here or not
  uint32_t internal = 0;  // endpoints that traffic to the clusterIP may use
  uint32_t external = 0;  // endpoints that external traffic may use
};

// The elements, all in the main table (Elem::table = kMainTable). `fwChain` is the port's
// firewall chain (firewallChainName()), empty when it has none.
std::vector<Elem> portPolicyElems(const proxier::ServicePortInfo& info,
                                  const PortEndpointCounts& counts, const std::string& fwChain);

}  // namespace sliceproxy::backends::nft
