#pragma once
// The eBPF backend's packet path for traffic from outside the node (issue 16, in progress): the
// tc programs on the --devices interfaces (NAME, or PREFIX+ for every interface whose name
// starts with PREFIX), the node addresses that accept NodePorts (the addresses of the devices
// named exactly, filtered by --nodeport-addresses), the SNAT address per family
// (--snat-address, else the first device's address) and the writer that follows each Diff.
// Pinned under --bpf-pin-dir: the programs stay attached when this object goes, and the next
// run adopts the maps (connection tracking included) and swaps its programs into the links.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/ebpf/nodeport_loader.h"
#include "backends/ebpf/nodeport_writer.h"
#include "proxier/config/network_config.h"
#include "proxier/core/diff.h"

namespace sliceproxy::backends::ebpf {

// The SNAT port range: above the kernel's default ephemeral range (32768-60999), so the
// node's own sockets do not collide with translated flows.
inline constexpr uint16_t kSnatPortMin = 61000, kSnatPortMax = 65535;

class NodePortPath {
 public:
  // Loads (adopting what net.bpfPinDir holds; "" pins nothing) and attaches; throws
  // std::runtime_error naming the device or object that failed.
  explicit NodePortPath(const proxier::NetworkConfig& net);
  std::string apply(const proxier::Diff& diff);
  std::string fullSync(const proxier::State& state);
  // Where NodePorts answer. With --nodeport-addresses primary: the node's primary IPs, none
  // until the Node object is seen (a sync that brings it re-plans every port).
  const std::vector<proxier::IpAddr>& nodeAddresses() const { return addresses_; }
  // The interfaces the programs are attached to, by name.
  std::vector<std::string> attached() const;
  const NodePortPrograms& programs() const { return *progs_; }
  // Whether pods' host-side interfaces get the programs (`+` or a PREFIX+ device): only then
  // can the socket programs leave a pod's flows to its own service to the packet path.
  bool reachesPods() const { return !prefixes_.empty(); }
  // The addresses of this node's pods (their network namespaces'), NP_RANGES_LOCAL_PODS host
  // entries from the next sync on: their flows to a ClusterIP keep their source.
  void setPodAddresses(std::vector<proxier::IpAddr> a) { podAddresses_ = std::move(a); }
  // Those of them where the XDP program runs natively too.
  const std::vector<std::string>& xdp() const { return xdp_; }

 private:
  // Attaches to every interface matching a prefix (`--devices veth+`) not attached yet: pods'
  // host-side interfaces, where a local backend's replies and a pod's own NodePort traffic
  // enter. Scanned at each sync (O(interfaces); a netlink link watcher is the follow-up).
  void attachNew();
  // --nodeport-addresses primary: follows the node's primary IPs; true when they changed.
  bool followNode(const proxier::NodeContext* node);
  // This node's pods in np_src_ranges under NP_RANGES_LOCAL_PODS (see nodeport_lb_maps.h): the
  // addresses setPodAddresses() gave, and with --enable-dsr the pod CIDRs (the Node's
  // spec.podCIDRs), whose clients stay SNATed.
  void followPodCidrs(const proxier::NodeContext* node);
  std::string syncAll();
  // apply / fullSync inside the writer's batch (one RCU wait for all the new tables).
  std::string applyBatch(const proxier::Diff& diff);
  std::string fullSyncBatch(const proxier::State& state);
  bool primaryOnly_ = false;
  bool dsr_ = false;
  std::vector<np_range_key> localPods_;  // as written (a previous run's, until the first sync)
  std::vector<proxier::IpAddr> podAddresses_;
  bool every_ = false;  // `+`: every interface, present and future
  std::vector<std::string> exact_, prefixes_, xdp_;
  std::map<int, std::string> attached_;  // ifindex -> name
  std::vector<proxier::IpAddr> addresses_;
  std::unique_ptr<NodePortPrograms> progs_;
  std::unique_ptr<NodePortWriter> writer_;
  // What the writer holds. The proxier keeps a port's view at one address until it deletes the
  // port (a Diff delete), so every port can be re-planned when the node addresses change.
  std::map<proxier::ServicePortKey, const proxier::ServicePortView*> ports_;
};

// The addresses of these interfaces (every interface's when empty; IPv6 link-local and loopback
// ones excepted), kept when one of `filter` contains them (an empty filter keeps all). Throws
// naming a device that is missing.
std::vector<proxier::IpAddr> deviceAddresses(const std::vector<std::string>& devices,
                                             const std::vector<proxier::Cidr>& filter);

}  // namespace sliceproxy::backends::ebpf
