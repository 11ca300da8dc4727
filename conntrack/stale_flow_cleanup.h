#pragma once
// The proxier's side of conntrack cleanup. After each successful sync, on the sync thread, it
// works out which flows the sync made stale (for the protocols its cleaner handles) and queues
// them; a worker thread has the cleaner delete them, so a large conntrack table (every kernel
// walk costs O(table)) never delays the next sync. Before deleting, each matched flow is judged
// again against what is programmed by then, under the sync lock: an endpoint put back by a later
// sync keeps its flows. The same worker runs the optional sweep, which judges every UDP/SCTP flow
// against what is programmed, to catch what event-driven cleanup missed (flows left while
// sliceproxy was down, races with the kernel), in bounded memory.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "conntrack/programmed_ports.h"
#include "conntrack/stale_flow_cleaner.h"
#include "proxier/core/node_state.h"
#include "proxier/core/proxier.h"

namespace sliceproxy::proxier {
class ConntrackMetrics;
}

namespace sliceproxy::conntrack {

struct CleanupOptions {
  // Delete on a worker thread. Without it nothing is deleted until runPending() is called
  // (tests and benchmarks, which want to time or order each step).
  bool worker = true;
  // Period of the background sweep; zero turns it off. Needs the worker.
  std::chrono::nanoseconds reconcilePeriod{0};
  // One sweep after the first full sync, for flows left stale while sliceproxy was not running
  // (its data plane stays programmed across restarts, its endpoints may not stay valid). Needs
  // the worker.
  bool sweepAfterStart = true;
  // Told how many flows each cleanup deleted (may be null).
  proxier::ConntrackMetrics* metrics = nullptr;
};

class StaleFlowCleanup final : public proxier::SyncObserver {
 public:
  // `state` is read during full syncs (the Diff of a full sync lists no endpoint changes);
  // `syncMutex` (the Proxier's state mutex, may be null) is held while flows are judged and
  // deleted, so a sync cannot change what is programmed between a verdict and its delete.
  StaleFlowCleanup(std::unique_ptr<StaleFlowCleaner> cleaner, const proxier::NodeState& state,
                   std::mutex* syncMutex, CleanupOptions opts);
  ~StaleFlowCleanup() override;

  void afterSync(const proxier::Diff& diff, bool full) override;
  // Queues again what a failed cleanup left (see CleanResult::retry).
  void afterUnchangedSync() override;
  // Deletes what the syncs so far made stale, on the calling thread.
  CleanResult runPending();
  // One sweep now, on the calling thread.
  CleanResult sweepNow();
  // Waits until the worker has nothing queued (tests).
  void waitIdle();

  StaleFlowCleaner& cleaner() { return *cleaner_; }
  uint64_t deletedTotal() const { return cleaner_->deletedTotal(); }
  uint64_t errorsTotal() const { return cleaner_->errorsTotal(); }
  size_t trackedPorts() const;

 private:
  class Judge;
  void workerLoop();

  std::unique_ptr<StaleFlowCleaner> cleaner_;
  const proxier::NodeState& state_;
  std::mutex* syncMutex_;
  const CleanupOptions opts_;

  mutable std::mutex mu_;  // guards ports_
  ProgrammedPorts ports_;

  std::mutex queueMu_;
  std::condition_variable queueCv_;
  std::vector<FlowSelector> pending_;  // guarded by queueMu_
  // What failed cleanups left, tried again after the next sync; guarded by queueMu_.
  std::vector<FlowSelector> retry_;
  // Beyond this many, the oldest retries are dropped (the sweep, when on, still finds them).
  static constexpr size_t kMaxRetries = 100000;
  bool stop_ = false, sweepRequested_ = false, busy_ = false;
  std::atomic<bool> stopping_{false};  // read by a running cleanup, to stop early
  std::thread thread_;
};

}  // namespace sliceproxy::conntrack
