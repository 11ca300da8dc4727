#include "proxier/core/endpoint_selection.h"

#include <algorithm>

namespace sliceproxy::proxier {

using namespace epflag;

uint8_t endpointFlags(const Endpoint& ep, const NodeIdentity& node) {
  uint8_t f = 0;
  if (ep.conditions.isReady()) f |= kReady;
  if (ep.conditions.isServing()) f |= kServing;
  if (ep.conditions.isTerminating()) f |= kTerminating;
  if (!node.nodeName.empty() && ep.nodeName == node.nodeName) f |= kLocal;
  if (!ep.zoneHints.empty()) {
    f |= kHasZoneHints;
    if (!node.zone.empty() &&
        std::find(ep.zoneHints.begin(), ep.zoneHints.end(), node.zone) != ep.zoneHints.end()) {
      f |= kZoneMatch;
    }
  }
  if (!ep.nodeHints.empty()) {
    f |= kHasNodeHints;
    if (std::find(ep.nodeHints.begin(), ep.nodeHints.end(), node.nodeName) != ep.nodeHints.end()) {
      f |= kNodeMatch;
    }
  }
  return f;
}

const char* clusterModeName(ClusterMode m) {
  switch (m) {
    case ClusterMode::Unused:
      return "Unused";
    case ClusterMode::AllReady:
      return "AllReady";
    case ClusterMode::PreferSameNode:
      return "PreferSameNode";
    case ClusterMode::PreferSameZone:
      return "PreferSameZone";
    case ClusterMode::ServingTerminating:
      return "ServingTerminating";
    case ClusterMode::None:
      return "None";
  }
  return "?";
}

const char* localModeName(LocalMode m) {
  switch (m) {
    case LocalMode::Unused:
      return "Unused";
    case LocalMode::Ready:
      return "Ready";
    case LocalMode::ServingTerminating:
      return "ServingTerminating";
    case LocalMode::None:
      return "None";
  }
  return "?";
}

void SelectionCounters::add(uint8_t f, int sign) {
  auto bump = [sign](uint32_t& c) { c = static_cast<uint32_t>(static_cast<int64_t>(c) + sign); };
  const bool ready = f & kReady;
  const bool servTerm = (f & kServing) && (f & kTerminating);
  if (ready) {
    bump(this->ready);
    if (!(f & kHasZoneHints)) bump(readyWithoutZoneHints);
    if (f & kZoneMatch) bump(readyZoneMatch);
    if (!(f & kHasNodeHints)) bump(readyWithoutNodeHints);
    if (f & kNodeMatch) bump(readyNodeMatch);
    if (f & kLocal) bump(localReady);
  } else if (servTerm && (f & kLocal)) {
    bump(localServingTerminatingNotReady);
  }
  if (servTerm) bump(servingTerminating);
}

SelectionModes selectModes(const ServicePortInfo& info, const SelectionCounters& c) {
  SelectionModes m;
  if (info.usesClusterEndpoints()) {
    // Hints are used only when every ready endpoint carries them and at least one is meant for
    // this node (or its zone); otherwise kube-proxy ignores topology for the whole port.
    if (c.ready > 0 && c.readyWithoutNodeHints == 0 && c.readyNodeMatch > 0) {
      m.cluster = ClusterMode::PreferSameNode;
    } else if (c.ready > 0 && c.readyWithoutZoneHints == 0 && c.readyZoneMatch > 0) {
      m.cluster = ClusterMode::PreferSameZone;
    } else if (c.ready > 0) {
      m.cluster = ClusterMode::AllReady;
    } else if (c.servingTerminating > 0) {
      m.cluster = ClusterMode::ServingTerminating;
    } else {
      m.cluster = ClusterMode::None;
    }
  }
  if (info.usesLocalEndpoints()) {
    if (c.localReady > 0) {
      m.local = LocalMode::Ready;
    } else if (c.localServingTerminatingNotReady > 0) {
      m.local = LocalMode::ServingTerminating;
    } else {
      m.local = LocalMode::None;
    }
  }
  return m;
}

uint8_t endpointSets(const SelectionModes& m, uint8_t f) {
  const bool ready = f & kReady;
  const bool servTerm = (f & kServing) && (f & kTerminating);
  uint8_t sets = 0;
  switch (m.cluster) {
    case ClusterMode::AllReady:
      sets |= ready ? epset::kCluster : 0;
      break;
    case ClusterMode::PreferSameNode:
      sets |= ready && (f & kNodeMatch) ? epset::kCluster : 0;
      break;
    case ClusterMode::PreferSameZone:
      sets |= ready && (f & kZoneMatch) ? epset::kCluster : 0;
      break;
    case ClusterMode::ServingTerminating:
      sets |= servTerm ? epset::kCluster : 0;
      break;
    case ClusterMode::Unused:
    case ClusterMode::None:
      break;
  }
  if (f & kLocal) {
    switch (m.local) {
      case LocalMode::Ready:
        sets |= ready ? epset::kLocal : 0;
        break;
      case LocalMode::ServingTerminating:
        sets |= servTerm ? epset::kLocal : 0;
        break;
      case LocalMode::Unused:
      case LocalMode::None:
        break;
    }
  }
  return sets;
}

}  // namespace sliceproxy::proxier
