#pragma once
// The eBPF data plane, part 1: socket-level load balancing for traffic that starts on this node
// (host processes and pods in --cgroup-root). Keeps a mirror of what it wrote so a sync touches
// only the frontends and slots of the changed service ports, and never lists the maps except
// once, at start-up, to adopt what a previous run left.

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/ebpf/garbage.h"
#include "backends/ebpf/map_writer.h"
#include "backends/ebpf/nodeport_path.h"
#include "backends/ebpf/pod_hairpin.h"
#include "backends/ebpf/slot_set.h"
#include "backends/ebpf/sock_lb_loader.h"
#include "backends/ebpf/sockmap_loader.h"
#include "proxier/config/network_config.h"
#include "proxier/core/backend.h"

namespace sliceproxy::backends::ebpf {

class EbpfBackend : public proxier::Backend {
 public:
  // sctp: the data plane of the SCTP service ports (neither eBPF path translates SCTP; the
  // registry gives nft::SctpPorts), or null to leave them unserved.
  explicit EbpfBackend(const proxier::NetworkConfig& net,
                       std::unique_ptr<proxier::Backend> sctp = nullptr);
  ~EbpfBackend() override;
  std::string name() const override { return "ebpf"; }
  static proxier::Capabilities supported();
  proxier::Capabilities capabilities() const override { return supported(); }
  proxier::BackendResult apply(const proxier::Diff& diff) override;
  proxier::BackendResult fullSync(const proxier::State& state) override;
  proxier::BackendResult cleanup() override;
  std::string drift() override;
  std::shared_ptr<proxier::FlowIndex> flowIndex() override {
    return sctp_ ? sctp_->flowIndex() : nullptr;
  }
  std::vector<std::string> kernelObjects(const proxier::ServicePortKey& key) const override;

  // For tests and benchmarks: the loaded programs (null before the first sync).
  const SockLbPrograms* programs() const { return progs_.get(); }
  // The sockmap shortcut (--sockmap-shortcut), null when off or before the first sync.
  const SockmapPrograms* sockmapPrograms() const { return sockmap_.get(); }
  // Where the last apply() spent its time: map updates, and the stale-socket walk.
  struct ApplyTimes {
    double mapMicros = 0, socketMicros = 0;
  };
  ApplyTimes lastApply() const { return lastApply_; }
  // Sockets destroyed because their backend left the service, since start.
  uint64_t destroyedSockets() const { return destroyedSockets_; }

 private:
  struct Port {
    proxier::ServicePortInfoPtr info;
    SlotSet sets[2];  // [0] cluster-wide, [1] node-local
    std::vector<std::pair<sp_svc_key, sp_svc_value>> frontends;
    // The proxier keeps a port's view at one address until it deletes the port.
    const proxier::ServicePortView* view = nullptr;
    // Its backends on this node (in the set its ClusterIP uses), and whether some of them are
    // pods whose sockets leave the ClusterIP to the packet path (PodHairpin).
    std::set<proxier::EndpointKey> local;
    bool hairpin = false;
  };

  std::string ensureLoaded();
  // adopted: the port's two sets as a previous run left them, or null for new ones.
  std::string createPort(const proxier::ServicePortView& v, SlotSet (*adopted)[2] = nullptr);
  std::string dropPort(std::map<proxier::ServicePortKey, Port>::iterator it);
  // members: the port has ClientIP affinity, so the member map is kept for its sets.
  // buryMembers: member entries existed before this change (affinity was on).
  std::string writePlan(const SlotSet& set, const SlotPlan& plan, bool members, bool buryMembers);
  // Affinity switched on: every live slot gets its member entry; off: they go.
  std::string membersFollowAffinity(Port& p, bool had);
  std::string syncFrontends(Port& p, const proxier::ServicePortView& v);
  // Deletes what earlier syncs freed once there is enough of it for a batch (or `all`).
  std::string flushGarbage(bool all);
  std::string adoptLeftovers(const proxier::State& state);
  // Counts the ports on each ClusterIP and writes or deletes its catch-all entry.
  std::string clusterIpRef(const proxier::IpAddr& ip, int delta);
  std::string moveClusterIp(Port& p, const proxier::ServicePortView& v);
  // The hairpin entries of the ports in `dirty` (every port after a rescan), and their
  // ClusterIP frontends' SP_SVC_F_HAIRPIN. rescan: a backend on this node came.
  std::string syncHairpin(const std::vector<Port*>& dirty, bool rescan);

  LoaderOptions options_;
  proxier::NetworkConfig net_;
  bool masqueradeAtPackets() const { return net_.masqueradeAll && !net_.devices.empty(); }
  std::unique_ptr<NodePortPath> nodePort_;  // with --devices only
  std::unique_ptr<PodHairpin> hairpin_;     // with the packet path on pods' interfaces
  std::unique_ptr<proxier::Backend> sctp_;
  std::unique_ptr<SockLbPrograms> progs_;
  bool sockmapShortcut_ = false;
  std::unique_ptr<SockmapPrograms> sockmap_;
  std::unique_ptr<MapWriter> maps_;
  std::map<proxier::ServicePortKey, Port> ports_;
  void bury(const SlotSet& set, const SlotPlan& plan, bool members);
  // Freed slots and member entries, deleted once no reader can still be using them.
  Garbage garbage_;
  std::map<proxier::IpAddr, uint32_t> clusterIpRefs_;
  uint32_t nextSetId_ = 1;
  uint64_t destroyedSockets_ = 0;
  ApplyTimes lastApply_;
  bool adopted_ = false;  // the first full sync has replaced what a previous run left
};

}  // namespace sliceproxy::backends::ebpf
