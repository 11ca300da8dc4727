#pragma once
// What a source (slice-watch) hands the proxier: typed, validated, immutable objects. Sources call
// these from their own threads; implementations must be cheap (O(size of the event)) and
// thread-safe.

#include <memory>
#include <string>

#include "proxier/model/endpoint_slice.h"
#include "proxier/model/node.h"
#include "proxier/model/service.h"

namespace sliceproxy::proxier {

using ServicePtr = std::shared_ptr<const Service>;
using SlicePtr = std::shared_ptr<const EndpointSlice>;
using NodePtr = std::shared_ptr<const Node>;

// An object a source could not accept, reported once with everything needed to find and fix it.
struct Rejection {
  std::string origin;  // file path or API resource, for the operator
  std::string kind;    // Service, EndpointSlice, Node, or "" when not even the kind is known
  std::string object;  // namespace/name, or "" when unknown
  std::string field;   // JSON path of the offending field, e.g. spec.ports[1].port
  std::string reason;  // short machine-friendly reason, used as a metric label
  std::string message;

  std::string describe() const;
};

// How fresh a source's view of the cluster is, for /healthz. A source that lost its API server
// keeps the last good state (the data plane does not change), so this informs; it does not
// make the node unhealthy.
struct SourceHealth {
  std::string source;               // e.g. "Kubernetes API https://10.0.0.1:6443"
  bool connected = true;            // every watch currently established
  double secondsSinceContact = -1;  // since the last successful exchange; -1 unknown
  // Since the source last made progress (a list, a watch event or bookmark, a watch that stays
  // up); -1: it always does (a local directory). `lagging` names what is furthest behind.
  double secondsWithoutProgress = -1;
  std::string lagging;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void upsertService(ServicePtr svc) = 0;
  virtual void deleteService(const ObjectKey& key) = 0;
  virtual void upsertSlice(SlicePtr slice) = 0;
  virtual void deleteSlice(const ObjectKey& key) = 0;
  virtual void upsertNode(NodePtr node) = 0;
  virtual void deleteNode(const ObjectKey& key) = 0;
  virtual void rejected(const Rejection& r) = 0;
  // Events between beginBatch() and endBatch() belong together (one manifest file saved, one
  // relist): no sync starts in the middle, so a new Service and its slices land in one sync
  // instead of passing through a moment with no endpoints. Batches may nest.
  virtual void beginBatch() {}
  virtual void endBatch() {}
  // A source calls this once its initial listing has been delivered; the first sync waits for
  // every source so a cold start never programs a half-listed cluster.
  virtual void synced() = 0;
};

// Holds a batch open for the lifetime of a scope.
class BatchGuard {
 public:
  explicit BatchGuard(EventSink& sink) : sink_(sink) { sink_.beginBatch(); }
  ~BatchGuard() { sink_.endBatch(); }
  BatchGuard(const BatchGuard&) = delete;
  BatchGuard& operator=(const BatchGuard&) = delete;

 private:
  EventSink& sink_;
};

}  // namespace sliceproxy::proxier
