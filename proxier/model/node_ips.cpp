#include "proxier/model/node_ips.h"

#include <algorithm>

namespace sliceproxy::proxier {

std::vector<IpAddr> primaryNodeIps(const Node* node, const std::optional<IpAddr>& override) {
  std::vector<IpAddr> all;
  if (node) {
    for (const char* type : {"InternalIP", "ExternalIP"}) {
      for (const auto& a : node->addresses) {
        if (a.type == type && a.ip) all.push_back(*a.ip);
      }
    }
  }
  std::vector<IpAddr> out;
  if (!all.empty()) {
    out.push_back(all.front());
    auto other = std::find_if(all.begin(), all.end(),
                              [&](const IpAddr& a) { return a.family != all.front().family; });
    if (other != all.end()) out.push_back(*other);
  }
  if (override) {
    // The override becomes the primary address: first, replacing its family's.
    std::erase_if(out, [&](const IpAddr& a) { return a.family == override->family; });
    out.insert(out.begin(), *override);
  }
  std::erase_if(out, [](const IpAddr& a) { return a.isLoopback(); });
  return out;
}

}  // namespace sliceproxy::proxier
