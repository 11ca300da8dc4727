#pragma once
// What one service port looks like in the kernel: its chains' rules and its frontend elements,
// derived from the node-local view. Pure functions of their inputs, so the backend can tell
// whether anything changed by comparing results.

#include <string>
#include <vector>

#include "backends/nftables/elements.h"
#include "backends/nftables/layout.h"
#include "backends/nftables/transaction.h"
#include "proxier/service_port_view.h"

namespace sliceproxy::backends::nft {

struct PortChains {
  std::string svc, ext, fw;  // chain names; ext/fw empty when the port has none
};

PortChains chainNames(uint32_t id, const proxier::ServicePortInfo& info);

// Endpoint set ids in the endpoints map: two per port, cluster-wide and node-local.
inline uint32_t endpointSetId(uint32_t portId, uint8_t set) {
  return portId * 2 + (set == proxier::epset::kLocal ? 1 : 0);
}

struct ChainInputs {
  uint32_t clusterCount = 0, localCount = 0;
  bool hasAnyEndpoints = false;
  const proxier::Cidr* nodePodCIDR = nullptr;  // for NodeCIDR local detection
  friend bool operator==(const ChainInputs&, const ChainInputs&) = default;
};

// Adds the rules of the port's chains (which must exist and be empty) to the transaction.
void addPortRules(Transaction& tx, const FamilyContext& ctx, uint32_t id,
                  const proxier::ServicePortInfo& info, const PortChains& chains,
                  const ChainInputs& in);

// The port's elements in the frontend maps (everything except endpoints).
std::vector<Elem> frontendElems(const proxier::ServicePortInfo& info, const PortChains& chains,
                                const ChainInputs& in, uint8_t internalSet, uint8_t externalSet);

}  // namespace sliceproxy::backends::nft
