#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sliceproxy::proxier {

// Objects carry a handful of labels; a sorted vector is smaller and faster than a map at that size.
class Labels {
 public:
  void set(std::string key, std::string value);
  const std::string* get(std::string_view key) const;
  bool has(std::string_view key) const { return get(key) != nullptr; }
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }
  friend bool operator==(const Labels&, const Labels&) = default;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

inline void Labels::set(std::string key, std::string value) {
  auto it = items_.begin();
  while (it != items_.end() && it->first < key) ++it;
  if (it != items_.end() && it->first == key) {
    it->second = std::move(value);
  } else {
    items_.insert(it, {std::move(key), std::move(value)});
  }
}

inline const std::string* Labels::get(std::string_view key) const {
  for (const auto& [k, v] : items_) {
    if (k == key) return &v;
  }
  return nullptr;
}

// Well-known label and annotation keys the proxy reads.
inline constexpr std::string_view kLabelServiceName = "kubernetes.io/service-name";
inline constexpr std::string_view kLabelServiceProxyName =
    "service.kubernetes.io/service-proxy-name";
inline constexpr std::string_view kLabelHeadless = "service.kubernetes.io/headless";
inline constexpr std::string_view kLabelTopologyZone = "topology.kubernetes.io/zone";

}  // namespace sliceproxy::proxier
