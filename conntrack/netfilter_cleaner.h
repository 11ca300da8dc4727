#pragma once
// StaleFlowCleaner over the kernel's conntrack table, for the nftables and IPVS data planes.
//
// deleteFlows() turns selectors into as few kernel-filtered dumps as it can (see dump_plan.h):
// the kernel walks its table once per dump and hands back only candidate flows; each is checked
// again against the selectors in userspace (through a hash index) and deleted in batches. Memory
// is bounded by one netlink message batch, whatever the size of the table.

#include <memory>
#include <string>

#include "conntrack/stale_flow_cleaner.h"

namespace sliceproxy::conntrack {

struct NetfilterCleanerOptions {
  // Above this many narrow walks in one call, walk the table once per protocol and family
  // (filtered by protocol only) instead.
  size_t maxFilteredDumps = 8;
  // Per call, log at most this many individual delete failures (the rest are only counted).
  size_t maxLoggedErrors = 10;
};

class NetfilterCleaner final : public StaleFlowCleaner {
 public:
  explicit NetfilterCleaner(NetfilterCleanerOptions opts = {});
  const char* name() const override { return "conntrack"; }
  bool handles(proxier::Protocol p) const override;
  CleanResult deleteFlows(std::span<const FlowSelector> selectors,
                          FlowJudge* judge = nullptr) override;
  CleanResult sweep(FlowJudge& judge) override;

  bool sctpTracked() const { return sctp_; }

 private:
  NetfilterCleanerOptions opts_;
  bool sctp_ = false;
};

}  // namespace sliceproxy::conntrack
