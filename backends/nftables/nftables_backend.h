#pragma once
// The nftables data plane, over netlink (libnftnl + libmnl). Keeps an in-memory mirror of what
// it wrote so an incremental sync touches only the changed service ports' chains and elements
// and never lists the kernel's ruleset.

#include <boost/unordered/unordered_flat_map.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "backends/nftables/affinity_carry.h"
#include "backends/nftables/layout.h"
#include "backends/nftables/port_program.h"
#include "backends/node_policy/flow_record.h"
#include "proxier/config/network_config.h"
#include "proxier/core/backend.h"

namespace sliceproxy::backends::nft {

// Dense slots 0..N-1 of one endpoint set, as numgen picks them. Removing an endpoint moves the
// last one into its slot, so a change rewrites at most two map elements.
class SlotTable {
 public:
  struct Slot {
    proxier::EndpointKey key;
    bool local = false;
  };
  uint32_t size() const { return static_cast<uint32_t>(slots_.size()); }
  const Slot& at(uint32_t i) const { return slots_[i]; }
  bool contains(const proxier::EndpointKey& k) const { return index_.contains(k); }
  void add(const proxier::EndpointKey& k, bool local);
  void remove(const proxier::EndpointKey& k);
  void reserve(size_t n) {
    slots_.reserve(n);
    index_.reserve(n);
  }
  // Slots whose content changed since the last takeChanges(), with what they held before.
  std::vector<std::pair<uint32_t, std::optional<Slot>>> takeChanges();

 private:
  void touch(uint32_t slot);
  std::vector<Slot> slots_;
  // Slots at or above the size of the last takeChanges() held nothing then: they need no
  // record of their previous content (a cold sync appends 100,000 of them).
  uint32_t committed_ = 0;
  boost::unordered_flat_map<proxier::EndpointKey, uint32_t, proxier::EndpointKeyHash> index_;
  boost::unordered_flat_map<uint32_t, std::optional<Slot>> before_;
};

class NftablesBackend : public proxier::Backend {
 public:
  explicit NftablesBackend(proxier::NetworkConfig net);
  ~NftablesBackend() override;
  std::string name() const override { return "nftables"; }
  static proxier::Capabilities supported();
  proxier::Capabilities capabilities() const override { return supported(); }
  proxier::BackendResult apply(const proxier::Diff& diff) override;
  proxier::BackendResult fullSync(const proxier::State& state) override;
  proxier::BackendResult cleanup() override;
  std::vector<std::string> kernelObjects(const proxier::ServicePortKey& key) const override;
  std::string drift() override;
  std::shared_ptr<proxier::FlowIndex> flowIndex() override {
    return flows_->enabled() ? flows_ : nullptr;
  }
  FlowRecord& flowRecord() { return *flows_; }

  struct Stats {
    size_t lastMessages = 0, lastBytes = 0;
  };
  Stats lastStats() const { return stats_; }

 private:
  struct Port;
  struct Family;
  class Changes;

  static std::unique_ptr<Family> freshFamily(const FamilyContext& ctx);
  Port& createPort(Family& f, const proxier::ServicePortView& v, Changes& ch);
  void createAffinity(Port& p, Changes& ch);
  void affinitySlotChanges(
      Family& f, Port& p, uint8_t s,
      const std::vector<std::pair<uint32_t, std::optional<SlotTable::Slot>>>& slots,
      const std::vector<std::pair<proxier::EndpointKey, bool>>& gone,
      const std::vector<std::pair<proxier::EndpointKey, bool>>& came, Changes& ch);
  void dropAffinity(Port& p, Changes& ch);
  proxier::BackendResult commit(Family& f, Changes& ch,
                                const std::function<void(Transaction&)>& prelude = nullptr);

  proxier::NetworkConfig net_;
  std::unique_ptr<Socket> sock_;
  std::shared_ptr<FlowRecord> flows_;
  // During a full sync only: the affinity clients read from the tables being replaced.
  AffinityCarry* carry_ = nullptr;
  std::unique_ptr<Family> families_[2];
  Stats stats_;
};

}  // namespace sliceproxy::backends::nft
