#pragma once
// The record of the UDP and SCTP flows that the node DNATed for services: a table of its own
// (`sliceproxy-flows`, per family) whose filter hooks put every packet a client sends in a
// DNATed UDP/SCTP flow into a timeout set keyed endpoint . endpoint port . protocol . client .
// client port . frontend . frontend port. Each such packet refreshes its element, with the
// timeout conntrack gave the flow after that packet plus a margin (flow_record.cpp), so every
// live translated flow whose client sent a packet since the table was created is in the set;
// conntrack cleanup seeds it with older flows by walking once after start. Cleanup then finds a
// removed endpoint's flows by exact tuple instead of walking the kernel's whole conntrack table.
//
// Only flows sliceproxy translated are recorded, not every DNAT on the node (Docker, hostPort,
// other proxies): a packet is recorded when its conntrack original destination is one of our
// UDP/SCTP frontends, looked up in two sets of the table kept from the Diff (`frontends`:
// address . proto . port; `nodeports`: proto . port). Why a lookup and not a conntrack mark set
// by our DNAT rules: ct mark bits are shared with CNIs and other programs (Calico, Cilium and
// OVS use them) and there is no bit nobody else may claim; the lookup costs one hash lookup per
// packet of a DNATed UDP/SCTP flow, touches no shared state, and a foreign DNAT fails it.
//
// Full syncs keep the record (a restart keeps it) and refill the frontend sets in the same
// transaction; `cleanup` removes the table. The cap (--flow-record-max) is the set's size; 0
// turns the record off (conntrack cleanup then walks the conntrack table).

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "backends/nftnl/elements.h"
#include "backends/nftnl/transaction.h"
#include "backends/node_policy/family.h"
#include "proxier/core/flow_index.h"
#include "proxier/core/service_port.h"

namespace sliceproxy::backends::nft {

inline const std::string kFlowTable = "sliceproxy-flows";

class FlowRecord final : public proxier::FlowIndex {
 public:
  static constexpr uint32_t kDefaultMaxFlows = 1u << 18;
  explicit FlowRecord(uint32_t maxFlows = kDefaultMaxFlows);
  bool enabled() const { return maxFlows_ > 0; }
  // Adds the table to `tx` unless `existing` (the family's current tables) shows it is there
  // with this layout and cap (else it is replaced, and the record starts over), and refills its
  // frontend sets from `ports`. Call once per full sync and family. Disabled: removes the table.
  void ensure(Transaction& tx, const NodeFamily& ctx, const TableList& existing,
              const std::vector<const proxier::ServicePortInfo*>& ports);
  // A service port's frontends stop or start being ours (created, changed or deleted ports).
  void portGone(Transaction& tx, const proxier::ServicePortInfo& info);
  void portCame(Transaction& tx, const proxier::ServicePortInfo& info);
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

  // How long an element lives after its client's last packet: the conntrack timeout that packet
  // gave the flow, plus a margin (flow_record.cpp).
  struct Timeouts {
    std::chrono::seconds udpUnreplied{40}, udpReplied{130}, sctp{220};
    std::chrono::seconds longest() const;
  };
  const Timeouts& elementTimeouts() const { return timeouts_; }
  uint32_t maxFlows() const { return maxFlows_; }
  // Flows in the record now (the fuller family; a dump, at most once per kFillMaxAge).
  Fill fill() override;
  static constexpr std::chrono::seconds kFillMaxAge{10};

 private:
  void frontendKeys(const proxier::ServicePortInfo& info,
                    const std::function<void(const char* set, const Bytes& key)>& fn) const;
  void refcount(Transaction& tx, const proxier::ServicePortInfo& info, int delta);
  size_t countLocked(proxier::IpFamily family, std::string& error);

  const uint32_t maxFlows_;
  std::mutex mu_;  // the conntrack worker, the sync thread and scrapes all use sock_
  Socket sock_;
  Timeouts timeouts_;
  // Per family, frontend keys -> number of ports holding them (sync thread only).
  std::map<std::pair<std::string, std::string>, uint32_t> frontends_[2];
  Fill lastFill_;
  std::chrono::steady_clock::time_point lastFillAt_{};
  // Each process starts unseeded: a previous run's record may have been created just before
  // it stopped, and flows may have come and gone while nothing refreshed their elements.
  std::atomic<uint64_t> generation_{1}, seeded_{0};
  bool exists_[2] = {false, false};
};

}  // namespace sliceproxy::backends::nft
