#pragma once
// The node policy next to IPVS, in the shared main table `sliceproxy` (backends/node_policy/):
// loadBalancerSourceRanges firewalls, reject or drop for service ports without usable endpoints
// (drop for a traffic policy Local with endpoints only elsewhere), and reject for clusterIP ports
// no service defines. IPVS load-balances; this table only filters, before IPVS sees a packet
// (input priority 0 < IPVS's 99; output -110 < IPVS's -98), and after it for ports IPVS did not
// claim (`filter-input-late`). Masquerading stays in table sliceproxy-ipvs (masquerade_table.h).
// One table per family; one transaction per sync with the changed ports' elements only.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/nftnl/elements.h"
#include "proxier/config/network_config.h"
#include "proxier/core/diff.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::backends::nft {
class Socket;
}

namespace sliceproxy::backends::ipvs {

// After IPVS's input hook (NF_IP_PRI_NAT_SRC - 1) and the input SNAT hook.
inline constexpr int32_t kLateInputPriority = 101;

class PolicyTable {
 public:
  PolicyTable(const proxier::NetworkConfig& net, proxier::IpFamily family);
  ~PolicyTable();
  // Records the port's policy as the view says now; nothing is sent before commit().
  void setPort(const proxier::ServicePortView& v);
  void removePort(const proxier::ServicePortKey& key);
  // Sends the changes since the last commit in one transaction. With `replace`, the table is
  // built again from every port in that same transaction (first sync, full syncs, a new Node).
  std::string commit(bool replace, const proxier::NodeContext* node);
  // Deletes the table if it is there.
  std::string remove();
  // Whether the last commit built the table (so it must be in the kernel).
  bool built() const { return built_; }

 private:
  struct Port {
    uint32_t id = 0;
    proxier::ServicePortInfoPtr info;
    std::string fwChain;
    std::vector<nft::Elem> elems;
  };
  nft::Socket& sock();

  proxier::NetworkConfig net_;
  proxier::IpFamily family_;
  uint16_t nfproto_;
  std::unique_ptr<nft::Socket> sock_;
  std::map<proxier::ServicePortKey, Port> ports_;
  std::map<proxier::IpAddr, int> clusterRefs_;
  uint32_t nextId_ = 0;
  bool built_ = false;
  // Pending since the last commit.
  std::vector<nft::Elem> del_, add_;
  std::vector<std::string> deadChains_;
  std::vector<proxier::ServicePortKey> newChains_;
  std::map<proxier::IpAddr, int> clusterDelta_;
};

}  // namespace sliceproxy::backends::ipvs
