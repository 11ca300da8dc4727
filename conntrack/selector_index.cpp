#include "conntrack/selector_index.h"

namespace sliceproxy::conntrack {

SelectorIndex::SelectorIndex(std::span<const FlowSelector> selectors) : selectors_(selectors) {
  for (uint32_t i = 0; i < selectors.size(); ++i) {
    const FlowSelector& s = selectors[i];
    if (s.anyLocalAddress) {
      byPort_[NodePortKey{s.family, s.proto, s.dport}].push_back(i);
    } else {
      byAddr_[AddrPortKey{s.dst, s.dport, s.proto}].push_back(i);
    }
  }
}

const FlowSelector* SelectorIndex::match(const Flow& f, const LocalAddresses& local) const {
  if (auto it = byAddr_.find(AddrPortKey{f.orig.dst, f.orig.dport, f.proto}); it != byAddr_.end()) {
    for (uint32_t i : it->second) {
      if (selectors_[i].matches(f, local)) return &selectors_[i];
    }
  }
  if (!byPort_.empty()) {
    if (auto it = byPort_.find(NodePortKey{f.family, f.proto, f.orig.dport}); it != byPort_.end()) {
      for (uint32_t i : it->second) {
        if (selectors_[i].matches(f, local)) return &selectors_[i];
      }
    }
  }
  return nullptr;
}

}  // namespace sliceproxy::conntrack
