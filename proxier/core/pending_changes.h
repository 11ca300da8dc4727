#pragma once
// The unit of work the ChangeTracker hands to a sync: for each dirty service, its newest raw
// objects. Nothing here is merged yet.

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "proxier/core/events.h"

namespace sliceproxy::proxier {

struct ServiceChanges {
  ObjectKey key;
  bool serviceChanged = false;
  ServicePtr service;  // current Service; null when deleted or filtered out
  // Newest content of each slice that changed since the last sync; null when deleted.
  std::vector<std::pair<std::string, SlicePtr>> slices;
};

struct PendingChanges {
  std::vector<ServiceChanges> services;
  bool nodeChanged = false;
  NodePtr node;  // this node's object; null when deleted or never seen
  uint64_t serviceEvents = 0;
  uint64_t sliceEvents = 0;
  // When each change in this batch started, the start of its network programming latency: an
  // EndpointSlice's trigger time when it carries one, otherwise the moment the change arrived.
  std::vector<std::chrono::system_clock::time_point> changeStarts;

  bool empty() const { return services.empty() && !nodeChanged; }
};

}  // namespace sliceproxy::proxier
