#pragma once
// The masquerading IPVS cannot do itself, in nftables table `ip sliceproxy-ipvs`: a connection
// IPVS translated is masqueraded when it came from outside the node (original destination an
// externalIP, LB VIP or NodePort address), when the node itself started it (its source is a
// local address: the clusterIP, bound to the dummy link), and, to a clusterIP, when its source is
// outside --cluster-cidr (every one with --masquerade-all). One table per family (ip, ip6), two
// sets of original destinations each, kept from the backend's virtual services; one transaction
// per sync and family.

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "backends/ipvs/ipvs_netlink.h"
#include "proxier/config/network_config.h"
#include "proxier/model/ip.h"

namespace sliceproxy::backends::nft {
class Socket;
}

namespace sliceproxy::backends::ipvs {

inline constexpr const char* kMasqueradeTable = "sliceproxy-ipvs";

// What the table holds, kept from the backend's virtual services.
struct MasqueradeState {
  std::set<proxier::IpAddr> cluster;  // clusterIPs
  // externalIP, LB VIP and NodePort frontends (address . protocol . port): masqueraded from
  // anywhere, or, under externalTrafficPolicy Local (`externalLocal`), from the node only.
  std::set<VirtualServiceKey> external, externalLocal;
  // externalTrafficPolicy Local: pods (--detect-local-mode) and the node reach the frontend's
  // clusterIP virtual service instead (DNAT before IPVS), so they get every endpoint.
  std::map<VirtualServiceKey, VirtualServiceKey> shortCircuit;
  std::set<proxier::IpAddr> hairpin;  // the node's endpoints
  friend bool operator==(const MasqueradeState&, const MasqueradeState&) = default;
};

class MasqueradeTable {
 public:
  MasqueradeTable(const proxier::NetworkConfig& net, proxier::IpFamily family);
  ~MasqueradeTable();
  // Creates (or replaces, in the same transaction) the table with this content.
  // nodePodCIDR: the Node's pod CIDR of this family, for --detect-local-mode=NodeCIDR (null
  // when unknown).
  std::string replace(const MasqueradeState& want, const proxier::Cidr* nodePodCIDR);
  // Brings the sets to this content with element changes only; replace() first.
  // Rebuilds the table instead when the Node's pod CIDR changed.
  std::string update(const MasqueradeState& want, const proxier::Cidr* nodePodCIDR);
  // Deletes the table if it is there.
  std::string remove();
  bool built() const { return built_; }

 private:
  nft::Socket& sock();
  proxier::NetworkConfig net_;
  proxier::IpFamily family_;
  uint16_t nfproto_;
  std::unique_ptr<nft::Socket> sock_;
  MasqueradeState have_;
  std::optional<proxier::Cidr> podCIDR_;
  bool built_ = false;
};

}  // namespace sliceproxy::backends::ipvs
