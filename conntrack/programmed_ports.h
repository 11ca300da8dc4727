#pragma once
// What the data plane was last programmed with, for the protocols a cleaner handles: each
// service port's frontends and which sets each endpoint is in. It lets a full sync (which
// carries no per-endpoint changes) still find what it made stale, and it is what a sweep judges
// flows against. Memory is proportional to the UDP/SCTP endpoints, never to the flow table.
// Not thread-safe: StaleFlowCleanup serialises access.

#include <boost/container/small_vector.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "conntrack/frontend_keys.h"
#include "conntrack/frontends.h"
#include "conntrack/selector.h"
#include "proxier/core/diff.h"

namespace sliceproxy::conntrack {

struct ServicePortKeyHash {
  size_t operator()(const proxier::ServicePortKey& k) const noexcept;
};

class ProgrammedPorts {
 public:
  using Handles = std::function<bool(proxier::Protocol)>;
  explicit ProgrammedPorts(Handles handles) : handles_(std::move(handles)) {}

  // False until the first full sync has been recorded.
  bool seeded() const { return seeded_; }
  size_t portCount() const { return ports_.size(); }

  // An incremental sync: plans from the Diff's own endpoint changes, in O(change).
  void applyDiff(const proxier::Diff& diff, std::vector<FlowSelector>& out);
  // A full sync: compares every handled port of `state` with what was recorded. With `out`
  // null (the first full sync after start) it only records.
  void applyState(const proxier::State& state, std::vector<FlowSelector>* out);

  // For a sweep: why this flow is stale given what is programmed, or nothing if it is not (or
  // is not addressed to a service frontend at all).
  std::optional<StaleReason> judge(const Flow& f, const LocalAddresses& local) const;
  // Whether a flow that `s` matched when a sync planned it is still stale: a later sync may
  // have put its endpoint back, or made its removed frontend a frontend again.
  bool stillStale(const FlowSelector& s, const Flow& f, const LocalAddresses& local) const;

 private:
  struct Port {
    proxier::ServicePortInfoPtr info;
    uint32_t cluster = 0, local = 0;
    // Endpoints in at least one set, with their epset bits.
    boost::unordered_flat_map<proxier::EndpointKey, uint8_t, proxier::EndpointKeyHash> sets;
    Frontends frontends;  // as indexed below
    uint64_t seenInFullSync = 0;
  };
  struct FrontendRef {
    Port* port;
    FrontendKind kind;
  };
  using Refs = boost::container::small_vector<FrontendRef, 1>;

  void setInfo(Port& p, const proxier::ServicePortInfoPtr& info);
  Refs frontendsOfFlow(const Flow& f, const LocalAddresses& local) const;
  void unindex(Port& p);

  Handles handles_;
  bool seeded_ = false;
  uint64_t fullSyncs_ = 0;
  std::unordered_map<proxier::ServicePortKey, std::unique_ptr<Port>, ServicePortKeyHash> ports_;
  boost::unordered_flat_map<AddrPortKey, Refs, AddrPortKeyHash> byAddr_;
  boost::unordered_flat_map<NodePortKey, Refs, NodePortKeyHash> byNodePort_;
};

}  // namespace sliceproxy::conntrack
