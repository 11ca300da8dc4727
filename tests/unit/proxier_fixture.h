#pragma once
// A tracker feeding a NodeState, the way the proxier wires them, minus threads and backend.

#include <gtest/gtest.h>

#include <algorithm>

#include "builders.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"
#include "proxier/ops/view_json.h"

namespace sliceproxy::testing {

class ProxierFixture : public ::testing::Test {
 protected:
  explicit ProxierFixture(std::string nodeName = "node-a", FilterConfig filter = {})
      : tracker(nodeName, filter), state(nodeName) {
    tracker.synced();
  }

  Diff sync() { return state.apply(tracker.take()); }

  const ServicePortView* view(std::string name = "svc", std::string port = "http",
                              IpFamily family = IpFamily::V4, Protocol proto = Protocol::TCP,
                              std::string ns = "default") {
    return state.find(ServicePortKey{{ns, name}, {port, proto, family}});
  }

  static std::vector<std::string> members(const ServicePortView* v, uint8_t set) {
    std::vector<std::string> out;
    if (!v) return out;
    for (auto* e : v->sortedEndpoints()) {
      if (e->sets & set) out.push_back(endpointString(e->key));
    }
    return out;
  }
  static std::vector<std::string> internal(const ServicePortView* v) {
    return members(v, v->internalSet());
  }
  static std::vector<std::string> external(const ServicePortView* v) {
    return members(v, v->externalSet());
  }

  ChangeTracker tracker;
  NodeState state;
};

using Strings = std::vector<std::string>;

}  // namespace sliceproxy::testing
