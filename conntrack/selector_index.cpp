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

}  // namespace sliceproxy::conntrack
