#pragma once
// The interface a data plane implements to forget flows a sync made stale. The nftables and IPVS
// data planes keep their flows in the kernel's conntrack table (NetfilterCleaner); the eBPF data
// plane keeps its own flow state and will provide its own cleaner. Deciding WHAT is stale is not
// the cleaner's job (see StaleFlowCleanup); a cleaner only finds and deletes flows, efficiently.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "conntrack/flow.h"
#include "conntrack/selector.h"
#include "proxier/model/service.h"

namespace sliceproxy::conntrack {

struct CleanResult {
  uint64_t deleted = 0;   // flows deleted
  uint64_t vanished = 0;  // matched but already gone when deleted (expired, or deleted twice)
  uint64_t errors = 0;    // deletes or dumps that failed
  uint64_t examined = 0;  // flows the kernel handed back and we looked at
  uint64_t dumps = 0;     // kernel table walks
  uint64_t recordLookups = 0;  // lookups in the data plane's flow record instead of a walk
  std::chrono::duration<double> took{0};
  std::chrono::duration<double> deleting{0};  // of which: waiting for delete batches
  // Selectors some of whose flows may still be there because a delete, a walk or a lookup
  // failed: the caller tries them again later (each flow is judged again then).
  std::vector<FlowSelector> retry;
  CleanResult& operator+=(const CleanResult& o);
};

// Running totals, read by the metrics endpoint from any thread.
struct CleanerCounters {
  std::atomic<uint64_t> deleted{0}, vanished{0}, errors{0}, examined{0}, dumps{0}, sweeps{0};
  void add(const CleanResult& r);
};

// Judges flows against what is programmed now. The cleaner calls `underLock` around judging one
// chunk of flows and deleting the stale ones, so what was judged cannot change (a sync putting
// an endpoint back) before it is deleted.
class FlowJudge {
 public:
  virtual ~FlowJudge() = default;
  virtual void underLock(const std::function<void()>& fn) = 0;
  // For a sweep: why this flow is stale, if it is.
  virtual std::optional<StaleReason> judge(const Flow& f) = 0;
  // For deleteFlows: whether a flow `s` matched (when a sync ran) is still stale now.
  virtual bool stillStale(const FlowSelector& s, const Flow& f) = 0;
  // True when the caller is shutting down: the cleaner stops at the next batch.
  virtual bool cancelled() const { return false; }
};

class StaleFlowCleaner {
 public:
  virtual ~StaleFlowCleaner() = default;
  virtual const char* name() const = 0;
  // Protocols whose stale flows this cleaner deletes: UDP, and SCTP where the kernel tracks it.
  // Never TCP: TCP flows end by themselves, and deleting them breaks graceful termination.
  virtual bool handles(proxier::Protocol p) const = 0;
  // Deletes every flow that matches one of the selectors (and, with a judge, is still stale
  // when it is deleted). Never throws and never fails the caller: errors are logged with the
  // flow and counted.
  virtual CleanResult deleteFlows(std::span<const FlowSelector> selectors,
                                  FlowJudge* judge = nullptr) = 0;
  // Streams every flow of a handled protocol through `judge` and deletes the stale ones, in
  // memory bounded by a chunk, not by the size of the table.
  virtual CleanResult sweep(FlowJudge& judge) = 0;
  // True when the cleaner needs a sweep to work at its best (to seed a flow record).
  virtual bool needsSweep() const { return false; }

  const CleanerCounters& counters() const { return counters_; }
  uint64_t deletedTotal() const { return counters_.deleted.load(std::memory_order_relaxed); }
  uint64_t errorsTotal() const { return counters_.errors.load(std::memory_order_relaxed); }

 protected:
  CleanerCounters counters_;
};

}  // namespace sliceproxy::conntrack
