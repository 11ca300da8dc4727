#pragma once
// Loads the packet-path load balancer (bpf/nodeport_lb.bpf.c) for traffic from outside the node
// and gives its maps a typed face: frontends, backends, Maglev tables (built and swapped in
// whole), the SNAT address per family; and attaches its two programs at tc ingress and egress
// of an interface, and its XDP program where the driver runs one natively. Not pinned yet: the
// programs live as long as this object (issue 16).

#include <cstdint>
#include <cstring>
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
  void set(uint32_t i, uint32_t backendId) { data_[i] = backendId; }

 private:
  int fd_ = -1;
  uint32_t size_ = 0;
  uint32_t* data_ = nullptr;
  size_t mapped_ = 0;
};

class NodePortPrograms {
 public:
  // Throws std::runtime_error naming the object (program, map) that failed.
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
  int ctFd() const;
  int rnatFd() const;
  int frontendPortsFd() const;

  void setFrontend(const np_fe_key& key, const np_frontend& value);
  void removeFrontend(const np_fe_key& key);
  void setBackend(uint32_t id, const np_backend& backend);
  void removeBackend(uint32_t id);
  // Builds a table holding backendIds (a Maglev table: its size is a prime) in a new inner map
  // and swaps it in for tableId in one update, so the program sees the old or the new table.
  void setMaglevTable(uint32_t tableId, const std::vector<uint32_t>& backendIds);
  void removeMaglevTable(uint32_t tableId);
  // Makes table the one tableId names (an RCU wait in the kernel: only when a table is new).
  void installMaglevTable(uint32_t tableId, const MaglevTableMap& table);
  // Many at once: one map update batch, so one RCU wait for all of them.
  void installMaglevTables(const std::vector<std::pair<uint32_t, int>>& idAndFd);
  // Admits clients in cidr to the frontends whose ranges_id is rangesId.
  void addSourceRange(uint32_t rangesId, const np_range_key& key);
  void removeSourceRange(const np_range_key& key);
  // This node's own addresses (np_local), for delivering translated packets through lo.
  void addLocalAddress(const np_local_key& key);
  // family: NP_FAMILY_V4 or NP_FAMILY_V6; addr all zero turns SNAT off for the family.
  void setSnat(uint8_t family, const np_snat& snat);

  // tc ingress and egress of the interface (a clsact qdisc is created if missing). Tests attach
  // only to interfaces they created.
  void attach(int ifindex);
  void detach(int ifindex);
  // np_xdp in the driver (native XDP) of the interface, in front of the tc programs, which stay
  // and take what it passes. "" when attached, else why not (the driver has no native XDP...):
  // the interface then has tc only.
  std::string attachXdp(int ifindex);

 private:
  nodeport_lb* skel_ = nullptr;
  std::set<int> attached_, xdp_;
  std::unique_ptr<FrontendPorts> ports_;
  struct KeyLess {
    bool operator()(const np_fe_key& a, const np_fe_key& b) const {
      return std::memcmp(&a, &b, sizeof(a)) < 0;
    }
  };
  std::set<np_fe_key, KeyLess> frontends_;  // the keys written, each counted once in ports_
};

}  // namespace sliceproxy::backends::ebpf
