#pragma once
// Finds, for a flow the kernel handed back, the selector that makes it stale: a hash lookup by
// original destination (and by destination port for NodePorts), then the selector's full check.

#include <boost/container/small_vector.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <span>

#include "conntrack/frontend_keys.h"
#include "conntrack/selector.h"

namespace sliceproxy::conntrack {

class SelectorIndex {
 public:
  explicit SelectorIndex(std::span<const FlowSelector> selectors);
  // The first selector that matches the flow, or null.
  const FlowSelector* match(const Flow& f, const LocalAddresses& local) const;
  bool needsLocalAddresses() const { return !byPort_.empty(); }

 private:
  using Ids = boost::container::small_vector<uint32_t, 2>;

  std::span<const FlowSelector> selectors_;
  boost::unordered_flat_map<AddrPortKey, Ids, AddrPortKeyHash> byAddr_;
  boost::unordered_flat_map<NodePortKey, Ids, NodePortKeyHash> byPort_;
};

}  // namespace sliceproxy::conntrack
