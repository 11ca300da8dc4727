#pragma once
// The merged, node-local model of every service. Slices are merged here, at sync time and only
// for dirty services (the lazy merge), and each merge touches only the slices that changed: the
// cost of a sync is proportional to the endpoints that changed, not to the size of a service.

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "proxier/core/diff.h"
#include "proxier/core/frontend_conflicts.h"
#include "proxier/core/pending_changes.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::proxier {

class NodeState {
 public:
  explicit NodeState(std::string nodeName);
  NodeState(const NodeState&) = delete;
  NodeState& operator=(const NodeState&) = delete;

  // Folds a batch of changes into the model. With wantDiff the result lists what changed; a
  // caller about to do a full sync passes false and skips building the change lists.
  Diff apply(PendingChanges changes, bool wantDiff = true);

  State state() const;
  const NodeContext& node() const { return node_; }
  const ServicePortView* find(const ServicePortKey& key) const;
  size_t serviceCount() const { return services_.size(); }
  size_t activePortCount() const;
  const FrontendConflicts& conflicts() const { return conflicts_; }
  void setObjectEvents(ObjectEvents* events) { conflicts_.setEvents(events); }
  // --bind-address when it is not 0.0.0.0 or ::: this node's primary IP of its family.
  void setNodeIpOverride(std::optional<IpAddr> ip);

 private:
  struct SliceRecord {
    std::string name;
    SlicePtr slice;
  };
  struct ServiceRecord {
    ServicePtr service;
    std::map<std::string, SliceRecord> slices;  // node-based: names stay at a fixed address
    std::map<PortGroupKey, std::unique_ptr<ServicePortView>> ports;
  };
  struct Work {
    ServicePortView* view;
    bool infoUpdate = false;
    ServicePortInfoPtr newInfo;
  };
  class WorkList;

  void applyService(ServiceChanges& change, WorkList& work);
  void rebuildInfos(ServiceRecord& rec, const ObjectKey& key, WorkList& work);
  void dropEmpty(const ObjectKey& key);
  void touchAll(WorkList& work);
  void addSlice(ServiceRecord& rec, const ObjectKey& key, SliceRecord& slice, WorkList& work);
  void removeSlice(ServiceRecord& rec, SliceRecord& slice, WorkList& work);
  ServicePortView& portView(ServiceRecord& rec, const ObjectKey& key, const PortGroupKey& group);
  void finalize(Work& w, Diff* diff);

  std::unordered_map<ObjectKey, ServiceRecord, ObjectKeyHash> services_;
  FrontendConflicts conflicts_;
  std::set<ObjectKey> conflictAffected_;
  NodeContext node_;
  std::optional<IpAddr> nodeIpOverride_;
};

}  // namespace sliceproxy::proxier
