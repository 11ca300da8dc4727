#pragma once
// The unit of work the ChangeTracker hands to a sync: for each dirty service, its newest raw
// objects. Nothing here is merged yet.

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "proxier/events.h"

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
  // When the oldest change in this batch arrived: the start of network programming latency.
  std::optional<std::chrono::steady_clock::time_point> oldestEvent;

  bool empty() const { return services.empty() && !nodeChanged; }
};

}  // namespace sliceproxy::proxier
