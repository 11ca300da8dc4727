#pragma once
// The proxier's side of conntrack cleanup: after each successful sync, on the sync thread, it
// works out which flows the sync made stale (for the protocols its cleaner handles) and has the
// cleaner delete them. Optionally, a background sweep judges every UDP/SCTP flow against what is
// programmed, to catch what event-driven cleanup missed (flows created while sliceproxy was down,
// races with the kernel), in bounded memory.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "conntrack/programmed_ports.h"
#include "conntrack/stale_flow_cleaner.h"
#include "proxier/node_state.h"
#include "proxier/proxier.h"

namespace sliceproxy::proxier {
class ConntrackMetrics;
}

namespace sliceproxy::conntrack {

struct CleanupOptions {
  // Period of the background sweep; zero turns it off.
  std::chrono::nanoseconds reconcilePeriod{0};
  // One sweep after the first full sync, for flows left stale while sliceproxy was not running
  // (its data plane stays programmed across restarts, its endpoints may not stay valid).
  bool sweepAfterStart = true;
  // Told how many flows each cleanup deleted (may be null).
  proxier::ConntrackMetrics* metrics = nullptr;
};

class StaleFlowCleanup final : public proxier::SyncObserver {
 public:
  // `state` is read during full syncs (the Diff of a full sync lists no endpoint changes);
  // `syncMutex` (the Proxier's state mutex, may be null) is held while a sweep judges flows, so
  // a sync cannot change what is programmed between a verdict and its delete.
  StaleFlowCleanup(std::unique_ptr<StaleFlowCleaner> cleaner, const proxier::NodeState& state,
                   std::mutex* syncMutex, CleanupOptions opts);
  ~StaleFlowCleanup() override;

  void afterSync(const proxier::Diff& diff, bool full) override;
  // One sweep now, on the calling thread.
  CleanResult sweepNow();

  StaleFlowCleaner& cleaner() { return *cleaner_; }
  uint64_t deletedTotal() const { return cleaner_->deletedTotal(); }
  uint64_t errorsTotal() const { return cleaner_->errorsTotal(); }
  size_t trackedPorts() const;

 private:
  class Judge;
  void sweepLoop();
  void requestSweep();

  std::unique_ptr<StaleFlowCleaner> cleaner_;
  const proxier::NodeState& state_;
  std::mutex* syncMutex_;
  const CleanupOptions opts_;

  mutable std::mutex mu_;  // guards ports_
  ProgrammedPorts ports_;

  std::mutex loopMu_;
  std::condition_variable loopCv_;
  bool stop_ = false, sweepRequested_ = false;
  std::thread thread_;
};

}  // namespace sliceproxy::conntrack
