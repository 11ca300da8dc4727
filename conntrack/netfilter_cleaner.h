#pragma once
// StaleFlowCleaner over the kernel's conntrack table, for the nftables and IPVS data planes.
//
// deleteFlows() turns selectors into as few kernel-filtered dumps as it can (see dump_plan.h):
// the kernel walks its table once per dump and hands back only candidate flows; each is checked
// again against the selectors in userspace (through a hash index) and deleted in batches. Memory
// is bounded by one netlink message batch, whatever the size of the table.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "conntrack/stale_flow_cleaner.h"
#include "proxier/core/flow_index.h"

namespace sliceproxy::conntrack {

class CtSocket;

struct NetfilterCleanerOptions {
  // Above this many narrow walks in one call, walk the table once per protocol and family
  // (filtered by protocol only) instead.
  size_t maxFilteredDumps = 8;
  // Per call, log at most this many individual delete failures (the rest are only counted).
  size_t maxLoggedErrors = 10;
  // SCTP flows only: a backend that keeps its own UDP flows and leaves SCTP to netfilter (eBPF).
  bool sctpOnly = false;
};

class NetfilterCleaner final : public StaleFlowCleaner {
 public:
  explicit NetfilterCleaner(NetfilterCleanerOptions opts = {});
  const char* name() const override { return "conntrack"; }
  bool handles(proxier::Protocol p) const override;
  CleanResult deleteFlows(std::span<const FlowSelector> selectors,
                          FlowJudge* judge = nullptr) override;
  CleanResult sweep(FlowJudge& judge) override;
  bool needsSweep() const override { return flows_ && flows_->needsSeed(); }

  bool sctpTracked() const { return sctp_; }
  // The data plane's record of translated flows: with it, an endpoint's flows are found by
  // exact tuple (a hash lookup each) instead of a walk of the whole conntrack table. Sweeps
  // seed it with the flows it has not seen.
  void setFlowIndex(std::shared_ptr<proxier::FlowIndex> flows) { flows_ = std::move(flows); }

 private:
  // Answers the selectors the flow record can answer (endpoint removals, while the record is
  // complete) and removes them from `selectors`; the rest are left to walks.
  void deleteRecorded(std::vector<FlowSelector>& selectors, CtSocket& socket,
                      const std::function<void(std::span<const Flow>)>& onChunk, CleanResult& r);
  NetfilterCleanerOptions opts_;
  bool sctp_ = false;
  std::shared_ptr<proxier::FlowIndex> flows_;
};

}  // namespace sliceproxy::conntrack
