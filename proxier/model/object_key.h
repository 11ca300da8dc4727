#pragma once
// namespace/name: how every Kubernetes object is named in logs, errors and maps.

#include <compare>
#include <functional>
#include <string>

namespace sliceproxy::proxier {

struct ObjectKey {
  std::string ns;  // empty for cluster-scoped kinds (Node)
  std::string name;

  std::string str() const { return ns.empty() ? name : ns + "/" + name; }
  friend bool operator==(const ObjectKey&, const ObjectKey&) = default;
  friend auto operator<=>(const ObjectKey&, const ObjectKey&) = default;
};

struct ObjectKeyHash {
  size_t operator()(const ObjectKey& k) const noexcept {
    size_t h = std::hash<std::string>{}(k.ns);
    return h ^ (std::hash<std::string>{}(k.name) + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2));
  }
};

}  // namespace sliceproxy::proxier
