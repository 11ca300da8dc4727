#pragma once
// Loads the packet-path load balancer (bpf/nodeport_lb.bpf.c) for traffic from outside the node
// and gives its maps a typed face: frontends, backends, Maglev tables (built and swapped in
// whole), the SNAT address per family; and attaches its two programs at tc ingress and egress
// of an interface, and its XDP program where the driver runs one natively.
// With a pin directory the packet path outlives the process, as kube-proxy's rules do: maps are
// pinned under <pin dir>/maps (np_*) and adopted by the next run with their contents (a map
// whose layout changed is created anew); the attachments are BPF links pinned under
// <pin dir>/links (np_ingress_IFINDEX, np_egress_IFINDEX, np_xdp_IFINDEX: tcx on 6.6+, XDP
// links), and a new run swaps its program into each existing link (BPF_LINK_UPDATE), so an
// interface never runs without one. Before 6.6 (no tcx) the tc programs are netlink filters,
// which stay attached by themselves and are replaced in place (tc filter replace).

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/ebpf/frontend_ports.h"
#include "nodeport_lb_maps.h"

struct nodeport_lb;

namespace sliceproxy::backends::ebpf {

struct NodePortOptions {
  uint32_t frontendEntries = 65536;
  uint32_t backendEntries = 1u << 20;
  uint32_t flowEntries = 1u << 18;  // connection tracking, and as many reverse entries
  // On a bpf filesystem (created if missing): pinned, above. "": the programs and maps are this
  // object's and are detached when it goes (tests, benches).
  std::string pinDir;
  // false: netlink tc filters even where the kernel has tcx, as before Linux 6.6 (tests).
  bool tcx = true;
};

// A Maglev table the writer owns: an mmapable array map, written through its mapping.
class MaglevTableMap {
 public:
  explicit MaglevTableMap(uint32_t size);  // throws naming the table
  ~MaglevTableMap();
  MaglevTableMap(const MaglevTableMap&) = delete;
  MaglevTableMap& operator=(const MaglevTableMap&) = delete;
  int fd() const { return fd_; }
  uint32_t size() const { return size_; }
  // Entry i: two per 8-byte element (np_maglev_pair), so entry i is word i of the mapping.
  // Only while open.
  void set(uint32_t i, uint32_t backendId) { data_[i] = backendId; }
  // Once the outer map holds the table (which keeps it alive): no descriptor, no mapping.
  // Thousands of frontends would otherwise hold a descriptor and a mapping each, past
  // RLIMIT_NOFILE (the daemon failed its first sync at 10,000 NodePort services under a limit
  // of 20,000) and vm.max_map_count. Tables kept up to date entry by entry (from
  // kMaglevIncrementalMinSize entries: services of more than 327 backends, so few) stay open
  // and mapped: reopening, mapping and faulting in a table of 67 MB again took ~3 ms of a
  // change that writes a few hundred entries.
  void park();
  // Reopens a parked table by its id to write it again; throws naming it.
  void open();

 private:
  void map();
  void release();
  int fd_ = -1;
  uint32_t id_ = 0;
  uint32_t size_ = 0;
  uint32_t* data_ = nullptr;
  size_t mapped_ = 0;
};

class NodePortPrograms {
 public:
  // Throws std::runtime_error naming the object (program, map, pin path) that failed.
  explicit NodePortPrograms(const NodePortOptions& opts = {});
  ~NodePortPrograms();
  NodePortPrograms(const NodePortPrograms&) = delete;
  NodePortPrograms& operator=(const NodePortPrograms&) = delete;

  int ingressFd() const;
  int egressFd() const;
  int xdpFd() const;
  int frontendsFd() const;
  int backendsFd() const;
  int maglevFd() const;
  int srcRangesFd() const;
  int ctFd() const;
  int rnatFd() const;
  int frontendPortsFd() const;
  int rnatSourcesFd() const;
  // np_rnat_sources' key of a backend address: np_source_key of bpf/nodeport_lb_core.h.
  static uint32_t rnatSourceKey(const uint8_t* addr, uint8_t family);

  // Pinned maps a previous run left, in use with their contents (empty: none, or not pinned).
  const std::vector<std::string>& adoptedMaps() const { return adopted_; }
  // Pinned maps whose layout (type, key or value size, entries, flags) differed from this
  // version's: created anew, their entries lost. Named with both layouts.
  const std::vector<std::string>& recreatedMaps() const { return recreated_; }
  // Links that already existed and now run this run's programs.
  int updatedLinks() const { return updatedLinks_; }
  // "tcx" or "tc filter" (kernels before 6.6), once something is attached.
  const char* tcMode() const { return tcMode_ == TcMode::Netlink ? "tc filter" : "tcx"; }

  void setFrontend(const np_fe_key& key, const np_frontend& value);
  void removeFrontend(const np_fe_key& key);
  // np_backends, and np_live: the id is live from setBackend to removeBackend.
  void setBackend(uint32_t id, const np_backend& backend);
  void removeBackend(uint32_t id);
  // The first id from `from` on whose np_live slot no live id holds (see NP_LIVE_SLOTS).
  uint32_t freeBackendId(uint32_t from) const;
  // Builds a table holding backendIds (a Maglev table: its size is a prime) in a new inner map
  // and swaps it in for tableId in one update, so the program sees the old or the new table.
  void setMaglevTable(uint32_t tableId, const std::vector<uint32_t>& backendIds);
  void removeMaglevTable(uint32_t tableId);
  // Many at once: one map delete batch, so one RCU wait for all of them (not one each).
  void removeMaglevTables(const std::vector<uint32_t>& tableIds);
  // Makes table the one tableId names (an RCU wait in the kernel: only when a table is new).
  void installMaglevTable(uint32_t tableId, const MaglevTableMap& table);
  // Many at once: one map update batch, so one RCU wait for all of them.
  void installMaglevTables(const std::vector<std::pair<uint32_t, int>>& idAndFd);
  // The backend ids in the table tableId names (empty when there is none): what a previous
  // run's frontend spreads its flows over.
  std::vector<uint32_t> readMaglevTable(uint32_t tableId) const;
  // Admits clients in cidr to the frontends whose ranges_id is rangesId.
  void addSourceRange(uint32_t rangesId, const np_range_key& key);
  void removeSourceRange(const np_range_key& key);
  // This node's own addresses (np_local), for delivering translated packets through lo.
  void addLocalAddress(const np_local_key& key);
  // np_local holds exactly these (a previous run's other addresses go).
  void setLocalAddresses(const std::vector<np_local_key>& keys);
  // family: NP_FAMILY_V4 or NP_FAMILY_V6; addr all zero turns SNAT off for the family.
  void setSnat(uint8_t family, const np_snat& snat);

  // tc ingress and egress of the interface (a pinned link already there runs the new programs
  // from now on). Tests attach only to interfaces they created.
  void attach(int ifindex);
  void detach(int ifindex);
  // For tests: the tc ingress program alone leaves the interface (XDP must carry it).
  void detachTcIngress(int ifindex);
  // np_xdp in the driver (native XDP) of the interface, in front of the tc programs, which stay
  // and take what it passes. "" when attached, else why not (the driver has no native XDP...):
  // the interface then has tc only.
  std::string attachXdp(int ifindex);
  // Detaches the packet path from every interface of this network namespace where this object
  // did not attach it (a previous run's --devices that are no longer listed; XDP where this run
  // has tc only); returns how many attachments went.
  int detachOthers();

  // Detaches the packet path from every interface of the calling network namespace (pinned
  // links under pinDir, tc filters and XDP programs of these programs) and unpins its maps;
  // returns how many objects went. Throws std::runtime_error on failure.
  static uint64_t removePinned(const std::string& pinDir);

 private:
  enum class TcMode { Unknown, Tcx, Netlink };
  // The link pinned as name_IFINDEX, updated to progFd, or a new one; 0, or -errno when the
  // kernel refused a new link.
  int link(const char* name, int ifindex, int attachType, int progFd, uint32_t flags);
  void attachNetlink(int ifindex);
  nodeport_lb* skel_ = nullptr;
  std::string pinDir_;
  TcMode tcMode_ = TcMode::Unknown;
  std::set<int> attached_, xdp_;
  void seedPrefilters();
  uint32_t* live_ = nullptr;  // np_live, mapped

  std::unique_ptr<FrontendPorts> ports_;
  struct KeyLess {
    bool operator()(const np_fe_key& a, const np_fe_key& b) const {
      return std::memcmp(&a, &b, sizeof(a)) < 0;
    }
  };
  std::set<np_fe_key, KeyLess> frontends_;  // the keys written, each counted once in ports_
  std::map<std::string, int> links_;        // pin name -> this object's link fd
  std::vector<std::string> adopted_, recreated_;
  int updatedLinks_ = 0;
};

}  // namespace sliceproxy::backends::ebpf
