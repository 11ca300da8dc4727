#pragma once
// Collects the flows a cleaner decided to delete and sends them to the kernel in batches, one
// sendmsg per batch; counts and logs the outcome of each delete.

#include <unordered_set>
#include <vector>

#include "conntrack/ctnetlink.h"
#include "conntrack/stale_flow_cleaner.h"

namespace sliceproxy::conntrack {

class DeleteQueue {
 public:
  DeleteQueue(CtSocket& socket, CleanResult& result, size_t maxLoggedErrors)
      : socket_(socket), result_(result), maxLoggedErrors_(maxLoggedErrors) {}
  ~DeleteQueue() { flush(); }

  // `why` (may be null) names the selector for the logs; without it, `reason` does.
  void add(const Flow& f, const FlowSelector* why, StaleReason reason);
  void flush();

 private:
  struct Item {
    Flow flow;
    const FlowSelector* why;
    StaleReason reason;
  };
  std::string describe(const Item& item) const;

  CtSocket& socket_;
  CleanResult& result_;
  size_t maxLoggedErrors_;
  size_t loggedErrors_ = 0;
  std::vector<Item> items_;
  std::unordered_set<const FlowSelector*> retried_;  // already in result_.retry
};

}  // namespace sliceproxy::conntrack
