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
  // The first selector that matches the flow (and that `accept` accepts), or null.
  const FlowSelector* match(const Flow& f, const LocalAddresses& local) const {
    return match(f, local, [](const FlowSelector&) { return true; });
  }
  template <typename Accept>
  const FlowSelector* match(const Flow& f, const LocalAddresses& local, Accept&& accept) const {
    if (auto it = byAddr_.find(AddrPortKey{f.orig.dst, f.orig.dport, f.proto});
        it != byAddr_.end()) {
      for (uint32_t i : it->second) {
        if (selectors_[i].matches(f, local) && accept(selectors_[i])) return &selectors_[i];
      }
    }
    if (!byPort_.empty()) {
      if (auto it = byPort_.find(NodePortKey{f.family, f.proto, f.orig.dport});
          it != byPort_.end()) {
        for (uint32_t i : it->second) {
          if (selectors_[i].matches(f, local) && accept(selectors_[i])) return &selectors_[i];
        }
      }
    }
    return nullptr;
  }
  bool needsLocalAddresses() const { return !byPort_.empty(); }

 private:
  using Ids = boost::container::small_vector<uint32_t, 2>;

  std::span<const FlowSelector> selectors_;
  boost::unordered_flat_map<AddrPortKey, Ids, AddrPortKeyHash> byAddr_;
  boost::unordered_flat_map<NodePortKey, Ids, NodePortKeyHash> byPort_;
};

}  // namespace sliceproxy::conntrack
