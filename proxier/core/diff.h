#pragma once
// What the proxier hands a backend. A Diff is proportional to what changed: each upserted
// service port points at its full node-local state and lists the endpoints whose membership
// changed, so a backend can patch in O(change) or rewrite the port from the view, as it prefers.

#include <memory>
#include <vector>

#include "proxier/core/endpoint_selection.h"
#include "proxier/core/events.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::proxier {

struct EndpointChange {
  EndpointKey key;
  uint8_t oldSets = 0;  // epset bits before this sync
  uint8_t newSets = 0;  // epset bits now; 0 with oldSets != 0 means removed from every set
  uint8_t flags = 0;    // epflag bits now (0 if the endpoint is gone)
  friend bool operator==(const EndpointChange&, const EndpointChange&) = default;
};

struct ServicePortUpsert {
  const ServicePortView* view = nullptr;  // the full current state
  bool created = false;                   // not programmed before this sync
  bool infoChanged = false;               // frontends or policy changed (always true if created)
  bool modesChanged = false;              // the selection mode of a whole set flipped
  // view->hasAnyEndpoints() flipped: a port without usable endpoints here goes from reject (none
  // anywhere) to drop (some elsewhere) or back, as kube-proxy decides.
  bool anyEndpointsChanged = false;
  ServicePortInfoPtr previousInfo;        // what was programmed before; null if created
  std::vector<EndpointChange> endpoints;  // sorted by key
  // Set sizes before this sync (0 if created), e.g. to find ports that went from 0 to N.
  uint32_t previousClusterCount = 0, previousLocalCount = 0;
};

struct ServicePortDelete {
  ServicePortKey key;
  ServicePortInfoPtr lastInfo;            // what was programmed
  std::vector<EndpointChange> endpoints;  // every endpoint that was in a set, now in none
};

// This node as backends need it: who we are and which addresses we own.
struct NodeContext {
  NodeIdentity identity;
  NodePtr node;  // null until the Node object has been seen
  // The node's IPs as kube-proxy detects them, --bind-address applied (model/node_ips.h):
  // where `--nodeport-addresses primary` serves.
  std::vector<IpAddr> primaryIps;
};

struct Diff {
  std::vector<ServicePortUpsert> upserts;  // sorted by key
  std::vector<ServicePortDelete> deletes;  // sorted by key
  bool nodeChanged = false;
  const NodeContext* node = nullptr;

  bool empty() const { return upserts.empty() && deletes.empty() && !nodeChanged; }
  size_t endpointChanges() const;
};

// Everything, for a cold start, a periodic resync or the recovery from a failed sync.
struct State {
  std::vector<const ServicePortView*> ports;  // active ports, sorted by key
  const NodeContext* node = nullptr;
};

}  // namespace sliceproxy::proxier
