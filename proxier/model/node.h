#pragma once

#include <optional>
#include <string>
#include <vector>

#include "proxier/model/ip.h"
#include "proxier/model/labels.h"
#include "proxier/model/object_key.h"
#include "proxier/model/skipped_value.h"

namespace sliceproxy::proxier {

struct NodeAddress {
  std::string type;          // InternalIP, ExternalIP, Hostname, ...
  std::optional<IpAddr> ip;  // set for the IP types
  std::string text;
  friend bool operator==(const NodeAddress&, const NodeAddress&) = default;
};

struct Taint {
  std::string key, value, effect;
  friend bool operator==(const Taint&, const Taint&) = default;
};

struct Node {
  ObjectKey key;  // cluster-scoped: ns is empty
  std::string resourceVersion;
  Labels labels;
  std::vector<NodeAddress> addresses;
  std::vector<Cidr> podCIDRs;
  std::vector<Taint> taints;
  bool beingDeleted = false;          // metadata.deletionTimestamp is set
  std::vector<SkippedValue> skipped;  // addresses and pod CIDRs left out, each with why

  std::string zone() const {
    auto* z = labels.get(kLabelTopologyZone);
    return z ? *z : std::string();
  }
  friend bool operator==(const Node&, const Node&) = default;
};

// Equal in everything sliceproxy reads: a new resourceVersion alone (the kubelet's status
// heartbeat, conditions, images, capacity) is not a change.
inline bool sameContent(const Node& a, const Node& b) {
  return a.key == b.key && a.labels == b.labels && a.addresses == b.addresses &&
         a.podCIDRs == b.podCIDRs && a.taints == b.taints && a.beingDeleted == b.beingDeleted &&
         a.skipped == b.skipped;
}

// Whether a change from `before` to `after` (either may be null) alters what the backends build
// their fixed structure from: this node's addresses (NodePorts on --nodeport-addresses primary)
// and pod CIDRs (--detect-local-mode NodeCIDR). Labels and taints do not.
inline bool shapeChanged(const Node* before, const Node* after) {
  if (!before || !after) return before != after;
  return before->addresses != after->addresses || before->podCIDRs != after->podCIDRs;
}

}  // namespace sliceproxy::proxier
