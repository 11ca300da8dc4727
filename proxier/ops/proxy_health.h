#pragma once
#include "proxier/core/events.h"
// kube-proxy's proxier health (/healthz, /livez): the proxy is unhealthy when an update has
// been queued for longer than the health timeout (2 x sync period) without being applied.
// /healthz is also unhealthy when this Node is being deleted or is tainted
// ToBeDeletedByClusterAutoscaler, so load balancers drain it; /livez ignores that.
// sliceproxy adds its source: /healthz is also unhealthy while the source (the API watches) has
// made no progress for longer than the source progress timeout, so a proxy that silently stopped
// following the cluster shows; /livez ignores that too (a restart would not reach the API
// server any better).

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "proxier/ops/http_server.h"
#include "proxier/model/node.h"
#include "proxier/core/proxier.h"

namespace sliceproxy::proxier {

inline constexpr const char* kToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler";

// Whether a load balancer may send this node traffic (kube-proxy's nodeEligible).
bool nodeEligible(const Node* node);

class ProxyHealth : public SyncListener {
 public:
  using Clock = std::chrono::system_clock;
  explicit ProxyHealth(
      std::chrono::nanoseconds timeout,
      std::function<Clock::time_point()> now = [] { return Clock::now(); });

  // A change is waiting for a sync.
  void queued();
  // Every successful sync applies what was queued before it started.
  void onSync(const SyncReport& report) override;
  // Testing and callers without a Proxier.
  void updated(Clock::time_point syncStart);
  void setNode(NodePtr node);
  // Where /healthz reads the source's freshness from (called on each request); a source
  // without progress for longer than `progressTimeout` (0: no limit) makes /healthz 503.
  void setSourceHealth(std::function<SourceHealth()> fn,
                       std::chrono::nanoseconds progressTimeout = std::chrono::nanoseconds(0));

  struct Status {
    bool healthy = true;       // no update pending longer than the timeout
    bool nodeEligible = true;  // Node not being deleted or tainted for deletion
    bool everSynced = false;
    Clock::time_point lastUpdated, currentTime;
    std::optional<Clock::time_point> oldestPendingQueued;
  };
  Status status() const;
  bool healthy() const { return status().healthy; }

  // Response bodies and codes for /healthz (livez = false) and /livez.
  HttpResponse respond(bool livez) const;

 private:
  const std::chrono::nanoseconds timeout_;
  const std::function<Clock::time_point()> now_;
  mutable std::mutex mu_;
  Clock::time_point lastUpdated_{};
  bool everSynced_ = false;
  std::optional<Clock::time_point> oldestQueued_, newestQueued_;
  NodePtr node_;
  std::function<SourceHealth()> sourceHealth_;
  std::chrono::nanoseconds sourceProgressTimeout_{0};
};

// RFC 3339 with nanoseconds, UTC: 2024-05-01T12:00:00.123456789Z.
std::string formatTime(std::chrono::system_clock::time_point t);

}  // namespace sliceproxy::proxier
