#pragma once
// The IPVS data plane: one virtual service per ClusterIP, externalIP and LoadBalancer address and
// per NodePort on each node address, masquerade forwarding to the endpoints, the addresses bound
// to a dummy interface sliceproxy owns. Keeps a mirror of what it programmed so an incremental
// sync sends only the requests for what changed; lists the kernel only at the first full sync (to
// adopt what a previous run left) and for real servers waiting on graceful termination.

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/ipvs/dummy_interface.h"
#include "backends/ipvs/ipvs_netlink.h"
#include "backends/ipvs/masquerade_table.h"
#include "backends/ipvs/policy_table.h"
#include "proxier/config/network_config.h"
#include "proxier/core/backend.h"

namespace sliceproxy::backends::ipvs {

// Kernel support: "" when the kernel answers the IPVS family, otherwise what is missing.
std::string kernelSupport();

class IpvsBackend : public proxier::Backend {
 public:
  explicit IpvsBackend(const proxier::NetworkConfig& net);
  ~IpvsBackend() override;
  std::string name() const override { return "ipvs"; }
  static proxier::Capabilities supported();
  proxier::Capabilities capabilities() const override { return supported(); }
  proxier::BackendResult apply(const proxier::Diff& diff) override;
  proxier::BackendResult fullSync(const proxier::State& state) override;
  proxier::BackendResult cleanup() override;
  std::vector<std::string> kernelObjects(const proxier::ServicePortKey& key) const override;
  // What another program removed: the dummy link or addresses on it, virtual services (`ipvsadm
  // -C`) or their settings, tables ip/ip6 sliceproxy-ipvs and sliceproxy. A link lookup, a dump
  // of the node's addresses, one dump of the virtual services (not of their real servers) and a
  // listing of each family's tables; the next full sync lists the kernel again and repairs.
  std::string drift() override;

  // How long a removed TCP/SCTP real server may keep weight 0 waiting for its connections.
  void setGracefulBound(std::chrono::seconds s) { gracefulBound_ = s; }
  // How often the connection counts of those real servers are listed (a dump of the virtual
  // service's real servers: 100,000 of them at the seed's size); 0: at every sync.
  void setGracefulCheckInterval(std::chrono::seconds s) { gracefulCheckEvery_ = s; }
  // Requests sent to IPVS since construction (tests and benchmarks).
  uint64_t ipvsRequests() const { return nl_.requests(); }
  size_t gracefulPending() const { return graceful_.size(); }

 private:
  struct Desired {
    VirtualService svc;
    bool external = false;  // an externalIP, LB VIP or NodePort: masqueraded from anywhere
    // externalTrafficPolicy Local: masqueraded from the node only; pods and the node reach
    // `clusterIP` instead (the short-circuit).
    bool local = false;
    VirtualServiceKey clusterIP;
    std::map<RealServerKey, uint32_t> dests;  // weight
  };
  struct Programmed {
    VirtualService svc;
    bool external = false;
    bool local = false;
    VirtualServiceKey clusterIP;
    std::map<RealServerKey, uint32_t> dests;  // weight; 0 while terminating gracefully
  };
  using Clock = std::chrono::steady_clock;

  std::string ensureOpen();
  // `known`: virtual services this process programmed, adopted wherever their address now is
  // (the dummy link may be gone with its addresses).
  std::string adoptKernelState(const std::set<VirtualServiceKey>& known = {});
  // After drift(): forgets the mirror and adopts what the kernel still has, so the full sync
  // that follows sends exactly what is missing.
  std::string adoptAgain();
  struct Drift {
    bool ipvs = false;    // the link, addresses on it or virtual services: adoptAgain()
    bool tables = false;  // a table: built again
    std::string what;     // as drift() says it
  };
  Drift findDrift();
  // The real servers of the next virtual services after driftCursor_ (at most
  // kDriftRealServersPerCheck of them in all) against programmed_: "" or what went.
  std::string realServersGone();
  bool isNodeAddress(const proxier::IpAddr& a) const;
  nft::Socket& nftSocket();
  std::map<VirtualServiceKey, Desired> desiredFor(const proxier::ServicePortView& v) const;
  // Makes the kernel's virtual service `key` match `want` (null: not wanted).
  std::string reconcile(const VirtualServiceKey& key, const Desired* want);
  std::string removeRealServer(const VirtualServiceKey& key, Programmed& p,
                               const RealServerKey& rs);
  std::string expireGraceful(bool all);
  // An upsert whose only change is endpoints: the real servers of those endpoints, nothing else.
  std::string applyEndpointChanges(const proxier::ServicePortView& v,
                                   const std::vector<proxier::EndpointChange>& changes);
  std::string addrRef(const proxier::IpAddr& a, int delta);
  // The addresses NodePorts are served on: every local one but loopback, link-local and ours,
  // narrowed by --nodeport-addresses CIDRs; for "primary", the node's primary IPs
  // (NodeContext::primaryIps).
  void refreshNodeAddresses(const proxier::NodeContext* node);
  // Brings table ip sliceproxy-ipvs to the programmed virtual services' addresses.
  std::string syncMasquerade(bool replace);
  PolicyTable& policy(proxier::IpFamily f) {
    return f == proxier::IpFamily::V4 ? policy4_ : policy6_;
  }
  // The port's endpoints on this node, for the hairpin set (all of them with `v`; none without).
  void trackLocal(const proxier::ServicePortKey& key, const proxier::ServicePortView* v);
  void localRef(const proxier::EndpointKey& ep, int delta);

  proxier::NetworkConfig net_;
  IpvsNetlink nl_;
  DummyInterface dummy_;
  MasqueradeTable masq4_, masq6_;
  PolicyTable policy4_, policy6_;
  std::unique_ptr<nft::Socket> nft_;  // listing tables for drift()
  std::map<proxier::ServicePortKey, std::set<proxier::EndpointKey>> local_;
  std::map<proxier::IpAddr, int> hairpinRefs_;
  bool open_ = false, adopted_ = false;
  std::map<VirtualServiceKey, Programmed> programmed_;
  // Where the last drift check's real-server look stopped.
  VirtualServiceKey driftCursor_{};
  static constexpr size_t kDriftRealServersPerCheck = 512;
  std::map<proxier::ServicePortKey, std::vector<VirtualServiceKey>> ports_;
  std::map<proxier::IpAddr, int> addrRefs_;
  std::map<std::pair<VirtualServiceKey, RealServerKey>, Clock::time_point> graceful_;
  std::chrono::seconds gracefulBound_{900};
  // As kube-proxy's graceful-termination manager, once a minute: an endpoint change between two
  // checks costs only its own requests.
  std::chrono::seconds gracefulCheckEvery_{60};
  Clock::time_point lastGracefulCheck_{};
  std::vector<proxier::IpAddr> nodeAddrs_;
  std::vector<proxier::Cidr> podCIDRs_;  // the Node's, for --detect-local-mode=NodeCIDR
  uint64_t ops_ = 0;
};

}  // namespace sliceproxy::backends::ipvs
