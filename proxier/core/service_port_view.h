#pragma once
// The node-local state of one service port in one family: its merged, deduplicated endpoints and
// which of them serve cluster-wide and node-local traffic. Backends read it; only NodeState
// writes it.

#include <boost/container/small_vector.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <string>
#include <vector>

#include "proxier/core/endpoint_selection.h"
#include "proxier/model/endpoint_slice.h"
#include "proxier/core/service_port.h"

namespace sliceproxy::proxier {

struct EndpointKey {
  IpAddr ip;
  uint16_t port = 0;
  friend bool operator==(const EndpointKey&, const EndpointKey&) = default;
  friend auto operator<=>(const EndpointKey&, const EndpointKey&) = default;
};

struct EndpointKeyHash {
  size_t operator()(const EndpointKey& k) const noexcept {
    return IpAddrHash{}(k.ip) ^ (static_cast<size_t>(k.port) * 0x9E3779B97F4A7C15ULL);
  }
};

// One slice's copy of an endpoint; pointers stay valid because NodeState keeps the slice alive
// for as long as any copy refers to it.
struct SliceCopy {
  const std::string* sliceName = nullptr;
  const Endpoint* endpoint = nullptr;
};

struct MergedEndpoint {
  EndpointKey key;
  uint8_t flags = 0;  // epflag bits of the chosen copy, as of the last sync
  uint8_t sets = 0;   // epset bits as of the last sync
  bool touched = false;
  SliceCopy chosen;
  boost::container::small_vector<SliceCopy, 1> copies;

  bool ready() const { return flags & epflag::kReady; }
  bool serving() const { return flags & epflag::kServing; }
  bool terminating() const { return flags & epflag::kTerminating; }
  bool isLocal() const { return flags & epflag::kLocal; }
  const Endpoint& source() const { return *chosen.endpoint; }
};

class ServicePortView {
 public:
  explicit ServicePortView(ServicePortKey key) : key_(std::move(key)) {}

  const ServicePortKey& key() const { return key_; }
  // Null while no Service defines this port (slices may arrive before their Service).
  const ServicePortInfoPtr& info() const { return info_; }
  bool active() const { return info_ != nullptr; }
  const SelectionModes& modes() const { return modes_; }
  const SelectionCounters& counters() const { return counters_; }
  uint32_t clusterCount() const { return clusterCount_; }
  uint32_t localCount() const { return localCount_; }
  bool hasAnyEndpoints() const { return counters_.hasAnyEndpoints(); }

  // Which epset bit serves traffic addressed to the clusterIP, and which serves traffic arriving
  // from outside (NodePort, externalIPs, LB VIPs).
  uint8_t internalSet() const {
    return info_ && info_->internalPolicyLocal ? epset::kLocal : epset::kCluster;
  }
  uint8_t externalSet() const {
    return info_ && info_->externalPolicyLocal ? epset::kLocal : epset::kCluster;
  }
  uint32_t countOf(uint8_t set) const { return set == epset::kLocal ? localCount_ : clusterCount_; }

  size_t endpointCount() const { return endpoints_.size(); }
  template <typename F>
  void forEachEndpoint(F&& f) const {
    for (const auto& [k, e] : endpoints_) f(e);
  }
  const MergedEndpoint* findEndpoint(const EndpointKey& k) const {
    auto it = endpoints_.find(k);
    return it == endpoints_.end() ? nullptr : &it->second;
  }
  // Deterministic order (address, port) regardless of the order slices arrived in.
  std::vector<const MergedEndpoint*> sortedEndpoints() const;

 private:
  friend class NodeState;
  ServicePortKey key_;
  ServicePortInfoPtr info_;
  SelectionModes modes_;
  SelectionCounters counters_;
  uint32_t clusterCount_ = 0;
  uint32_t localCount_ = 0;
  boost::unordered_flat_map<EndpointKey, MergedEndpoint, EndpointKeyHash> endpoints_;
  std::vector<EndpointKey> touched_;
};

}  // namespace sliceproxy::proxier
