#pragma once
// ClientIP affinity survives full syncs and restarts. A full sync replaces the service tables,
// and with them the timeout sets that remember which client used which endpoint; kube-proxy's
// modes keep that state, so clients would otherwise be re-balanced every hour, after every
// failed sync and at every restart. Each affinity set therefore carries its owner (service
// port, cluster-wide or node-local endpoint set, endpoint) in its userdata; before replacing the
// tables, a full sync reads the clients of every such set with their remaining time, and the new
// sets of the same owner start with them.

#include <cstdint>
#include <string>
#include <vector>

#include <boost/unordered/unordered_flat_map.hpp>

#include "backends/nftnl/transaction.h"
#include "proxier/core/service_port.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::backends::nft {

struct AffinityClient {
  proxier::IpAddr addr;
  uint64_t remainingMs = 0;
};

// The owner tag stored in an affinity set's userdata; "" when it would not fit (the set then
// simply starts empty after a full sync).
std::string affinityOwnerTag(const proxier::ServicePortKey& port, uint8_t slotTable,
                             const proxier::EndpointKey& endpoint);
// Userdata bytes (nftnl's TLV layout, a type nft ignores) holding `tag`.
std::vector<uint8_t> affinityOwnerUserdata(const std::string& tag);

class AffinityCarry {
 public:
  // Reads the clients of every tagged affinity set in `tables` (the family's sliceproxy service
  // tables as they are now). On error, returns an empty carry and sets `error`.
  static AffinityCarry read(Socket& sock, uint16_t nfproto, proxier::IpFamily family,
                            const std::vector<std::string>& tables, std::string& error);

  // The clients remembered for this owner; each owner's clients are handed out once.
  std::vector<AffinityClient> take(const std::string& tag);
  size_t sets() const { return byOwner_.size(); }
  size_t clients() const { return clients_; }

 private:
  boost::unordered_flat_map<std::string, std::vector<AffinityClient>> byOwner_;
  size_t clients_ = 0;
};

}  // namespace sliceproxy::backends::nft
