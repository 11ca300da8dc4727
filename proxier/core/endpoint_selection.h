#pragma once
// kube-proxy's node-local endpoint selection (CategorizeEndpoints), restated so it can be kept
// up to date incrementally: every decision depends only on a few per-port counters, so a change
// to one endpoint costs O(1) unless it flips a decision for the whole port.

#include <cstdint>
#include <string_view>

#include "proxier/model/endpoint_slice.h"
#include "proxier/core/service_port.h"

namespace sliceproxy::proxier {

// What this node knows about one merged endpoint, packed so the selection never touches strings.
namespace epflag {
inline constexpr uint8_t kReady = 1, kServing = 2, kTerminating = 4, kLocal = 8, kHasZoneHints = 16,
                         kZoneMatch = 32, kHasNodeHints = 64, kNodeMatch = 128;
}

// Membership bits of an endpoint: the cluster-wide set and the node-local set.
namespace epset {
inline constexpr uint8_t kCluster = 1, kLocal = 2;
}

struct NodeIdentity {
  std::string nodeName;
  std::string zone;  // label topology.kubernetes.io/zone of this node, "" when unknown
};

uint8_t endpointFlags(const Endpoint& ep, const NodeIdentity& node);

enum class ClusterMode : uint8_t {
  Unused,              // the port never uses cluster-wide endpoints
  AllReady,            // every ready endpoint
  PreferSameNode,      // ready endpoints hinted for this node
  PreferSameZone,      // ready endpoints hinted for this node's zone
  ServingTerminating,  // nothing ready anywhere: fall back to serving+terminating endpoints
  None,                // nothing usable
};

enum class LocalMode : uint8_t {
  Unused,              // the port never uses node-local endpoints
  Ready,               // local ready endpoints
  ServingTerminating,  // no local ready endpoint: local serving+terminating ones
  None,                // no usable local endpoint
};

const char* clusterModeName(ClusterMode m);
const char* localModeName(LocalMode m);

// Counters over a port's merged endpoints from which both modes follow.
struct SelectionCounters {
  uint32_t ready = 0;
  uint32_t readyWithoutZoneHints = 0;
  uint32_t readyZoneMatch = 0;
  uint32_t readyWithoutNodeHints = 0;
  uint32_t readyNodeMatch = 0;
  uint32_t servingTerminating = 0;
  uint32_t localReady = 0;
  uint32_t localServingTerminatingNotReady = 0;

  void add(uint8_t flags, int sign);
  bool hasAnyEndpoints() const { return ready > 0 || servingTerminating > 0; }
  friend bool operator==(const SelectionCounters&, const SelectionCounters&) = default;
};

struct SelectionModes {
  ClusterMode cluster = ClusterMode::Unused;
  LocalMode local = LocalMode::Unused;
  friend bool operator==(const SelectionModes&, const SelectionModes&) = default;
};

SelectionModes selectModes(const ServicePortInfo& info, const SelectionCounters& c);

// The epset bits an endpoint with these flags gets under these modes.
uint8_t endpointSets(const SelectionModes& modes, uint8_t flags);

}  // namespace sliceproxy::proxier
