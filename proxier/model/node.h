#pragma once

#include <optional>
#include <string>
#include <vector>

#include "proxier/model/ip.h"
#include "proxier/model/labels.h"
#include "proxier/model/object_key.h"

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
  bool beingDeleted = false;  // metadata.deletionTimestamp is set

  std::string zone() const {
    auto* z = labels.get(kLabelTopologyZone);
    return z ? *z : std::string();
  }
  friend bool operator==(const Node&, const Node&) = default;
};

}  // namespace sliceproxy::proxier
