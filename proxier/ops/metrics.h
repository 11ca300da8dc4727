#pragma once
// Prometheus metrics, named and bucketed as kube-proxy's where kube-proxy has them, plus
// sliceproxy's own. Built on prometheus-cpp's core (registry + text serializer); served by our
// HttpServer on --metrics-bind-address.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "proxier/core/change_tracker.h"
#include "proxier/core/flow_index.h"
#include "proxier/core/proxier.h"
#include "proxier/ops/http_server.h"

namespace sliceproxy::proxier {

// What the API source reports; the manifest-directory source leaves these at zero.
class WatchMetrics {
 public:
  virtual ~WatchMetrics() = default;
  virtual void watchReconnected(const std::string& resource) = 0;
  virtual void relisted(const std::string& resource) = 0;
};

// What conntrack cleanup reports.
class ConntrackMetrics {
 public:
  virtual ~ConntrackMetrics() = default;
  virtual void conntrackEntriesDeleted(uint64_t n) = 0;
  // Deletes, reads of the table or of the flow record that failed (never a failed sync).
  virtual void conntrackErrors(uint64_t n) = 0;
};

class Metrics : public SyncListener, public WatchMetrics, public ConntrackMetrics {
 public:
  // tracker may be null (tests); its counters are read at scrape time.
  Metrics(std::string backendName, const ChangeTracker* tracker);
  ~Metrics() override;

  void onSync(const SyncReport& report) override;
  // A change was recorded and waits for a sync.
  void queued();
  void healthServed(bool livez, unsigned code);
  void watchReconnected(const std::string& resource) override;
  void relisted(const std::string& resource) override;
  void conntrackEntriesDeleted(uint64_t n) override;
  void conntrackErrors(uint64_t n) override;
  void healthCheckBindFailed();
  // The data plane's flow record, read (at most every few seconds) at scrape time.
  void watchFlowRecord(std::shared_ptr<FlowIndex> flows) { flows_ = std::move(flows); }

  // Prometheus text exposition format 0.0.4.
  std::string render() const;
  HttpResponse respond() const;

 private:
  class Live;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Live> live_;
  const std::string backend_;
  const ChangeTracker* tracker_;
  std::shared_ptr<FlowIndex> flows_;

  prometheus::Histogram *syncDuration_, *syncFull_, *syncPartial_, *netProgramming_,
      *kernelOpsPerSync_;
  // The same observations as netProgramming_, as quantiles: kube-proxy's buckets (1 s wide
  // between 1 s and 60 s) cannot tell 1.1 s from 1.9 s.
  prometheus::Summary* netProgrammingQuantiles_;
  prometheus::Gauge *lastTimestamp_, *lastQueued_, *noLocalInternal_, *noLocalExternal_;
  prometheus::Gauge* frontendConflicts_;
  // kube-proxy's name for the same count, registered (as kube-proxy does) in nftables mode only.
  prometheus::Counter* nftablesSyncFailures_ = nullptr;
  prometheus::Counter *kernelOps_, *syncFailures_, *repairs_, *conntrackDeleted_, *conntrackErrors_,
      *hcBindFailures_;
  prometheus::Family<prometheus::Counter>* healthz_;
  prometheus::Family<prometheus::Counter>* livez_;
  prometheus::Family<prometheus::Counter>* reconnects_;
  prometheus::Family<prometheus::Counter>* relists_;
  std::mutex mu_;
  // Events already folded into a sync: pending = recorded - taken.
  std::atomic<uint64_t> takenServiceEvents_{0}, takenSliceEvents_{0};
  // Per service port with a Local policy: does it lack local endpoints (internal, external)?
  std::map<ServicePortKey, std::pair<bool, bool>> noLocal_;
};

}  // namespace sliceproxy::proxier
