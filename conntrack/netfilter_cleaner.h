#pragma once
// StaleFlowCleaner over the kernel's conntrack table, for the nftables and IPVS data planes.
//
// deleteFlows() turns selectors into a few kernel-filtered dumps: one per frontend address and
// port (narrowed further to the endpoint when only one endpoint of that frontend went away), so
// the kernel walks its table and hands back only candidate flows; each is checked again against
// the selectors in userspace and deleted in batches. When a sync touched so many frontends that
// one walk per frontend would cost more, it does one walk per protocol and family instead and
// matches through a hash index. Memory is bounded by one netlink message batch either way.

#include <memory>
#include <string>

#include "conntrack/stale_flow_cleaner.h"

namespace sliceproxy::conntrack {

struct NetfilterCleanerOptions {
  // Above this many distinct frontends in one call, walk the table once per protocol and family
  // (filtered by protocol) instead of once per frontend.
  size_t maxFilteredDumps = 8;
  // Per call, log at most this many individual delete failures (the rest are only counted).
  size_t maxLoggedErrors = 10;
};

class NetfilterCleaner final : public StaleFlowCleaner {
 public:
  explicit NetfilterCleaner(NetfilterCleanerOptions opts = {});
  const char* name() const override { return "conntrack"; }
  bool handles(proxier::Protocol p) const override;
  CleanResult deleteFlows(std::span<const FlowSelector> selectors) override;
  CleanResult sweep(FlowJudge& judge) override;

  bool sctpTracked() const { return sctp_; }

 private:
  NetfilterCleanerOptions opts_;
  bool sctp_ = false;
};

}  // namespace sliceproxy::conntrack
