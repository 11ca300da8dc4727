#pragma once
// The record of the UDP and SCTP flows that the node DNATed for services: a table of its own
// (`sliceproxy-flows`, per family) whose filter hooks put every packet of a DNATed UDP/SCTP flow
// into a timeout set keyed endpoint . endpoint port . protocol . client . client port .
// frontend . frontend port. Each packet refreshes its element and elements outlive the
// conntrack timeouts, so every live translated flow that sent a packet since the table was
// created is in the set; conntrack cleanup seeds it with older flows by walking once after start.
// Cleanup then finds a removed endpoint's flows by exact tuple instead of walking the kernel's
// whole conntrack table.
//
// Full syncs leave the table alone (a restart keeps the record), `cleanup` removes it.

#include <atomic>
#include <chrono>
#include <mutex>

#include "backends/nftnl/transaction.h"
#include "backends/node_policy/family.h"
#include "proxier/core/flow_index.h"

namespace sliceproxy::backends::nft {

inline const std::string kFlowTable = "sliceproxy-flows";

class FlowRecord final : public proxier::FlowIndex {
 public:
  FlowRecord();
  // Adds the table to `tx` unless `existing` (the family's current tables) shows it is there.
  // Call once per full sync and family.
  void ensure(Transaction& tx, const NodeFamily& ctx, const TableList& existing);
  // The table was removed (sliceproxy cleanup).
  void removed();

  Coverage flowsAnsweredBy(proxier::IpFamily family,
                           const std::function<bool(const proxier::IpAddr&)>& wanted,
                           const std::function<void(const proxier::RecordedFlow&)>& fn,
                           std::string& error) override;
  uint64_t generation() const override { return generation_.load(); }
  bool needsSeed() const override { return seeded_.load() != generation_.load(); }
  // Also for tests and benchmarks that create conntrack entries without sending packets.
  void recordFlows(std::span<const proxier::RecordedFlow> flows, std::string& error) override;
  void markSeeded(uint64_t generation) override;

  // How long elements live: above every conntrack timeout of a live UDP/SCTP flow.
  std::chrono::seconds elementTimeout() const { return timeout_; }
  static constexpr uint32_t kMaxFlows = 1u << 18;

 private:
  std::mutex mu_;  // the conntrack worker and the sync thread both use sock_
  Socket sock_;
  std::chrono::seconds timeout_;
  // Each process starts unseeded: a previous run's record may have been created just before
  // it stopped, and flows may have come and gone while nothing refreshed their elements.
  std::atomic<uint64_t> generation_{1}, seeded_{0};
  bool exists_[2] = {false, false};
};

}  // namespace sliceproxy::backends::nft
