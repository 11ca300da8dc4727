#pragma once
// healthCheckNodePort servers: one HTTP listener per externalTrafficPolicy=Local
// LoadBalancer service, telling the cloud load balancer whether this node has local endpoints.
// 200 with the count (and X-Load-Balancing-Endpoint-Weight) iff at least one local ready
// endpoint exists, the proxy is healthy and the first sync has completed; 503 otherwise.
// Listeners open and close as services come and go, driven by the syncs.

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "proxier/core/proxier.h"
#include "proxier/ops/http_server.h"

namespace sliceproxy::proxier {

class HealthCheckPorts : public SyncListener {
 public:
  // Binds one listener per port on each of bindHosts ({""} = every address; kube-proxy uses the
  // --nodeport-addresses addresses when that flag is set); proxyHealthy is asked on every
  // request (kube-proxy's serviceProxyHealthy). A port that cannot be bound (taken by another
  // program, or sliceproxy's own healthz port) is logged once with its Service, reported
  // through onBindFailure, and retried every kRetry; it never affects anything else.
  HealthCheckPorts(HttpServer& http, std::vector<std::string> bindHosts,
                   std::function<bool()> proxyHealthy,
                   std::function<void()> onBindFailure = nullptr);
  static constexpr std::chrono::seconds kRetry{5};
  ~HealthCheckPorts() override;

  void onSync(const SyncReport& report) override;

  struct Entry {
    ObjectKey service;
    uint16_t port = 0;
    uint32_t localEndpoints = 0;
    bool listening = false;
  };
  std::vector<Entry> entries() const;
  HttpResponse respond(uint16_t port) const;

 private:
  // One service port's local ready endpoints. kube-proxy reports the endpoints, not endpoint x
  // port x family: a pod serving two ports counts once, and each family is counted alone.
  struct Contribution {
    uint16_t port = 0;
    IpFamily family = IpFamily::V4;
    std::vector<IpAddr> localReady;  // sorted, unique
  };
  struct Served {
    ObjectKey service;
    uint32_t localEndpoints = 0;
    std::vector<int> listeners;  // per bind host; 0 while binding fails (retried every kRetry)
    bool failing = false;        // the failure was logged; log again only after a success
    bool listening() const {
      for (int l : listeners) {
        if (!l) return false;
      }
      return !listeners.empty();
    }
  };
  void account(const ServicePortView& view);
  void reconcileLocked();
  void bindLocked(uint16_t port, Served& s);
  void retryLoop();

  HttpServer& http_;
  const std::vector<std::string> bindHosts_;
  const std::function<bool()> proxyHealthy_;
  const std::function<void()> onBindFailure_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::set<std::pair<uint16_t, ObjectKey>> claimWarned_;  // duplicate claims already logged
  bool synced_ = false;
  // Per service port, what it adds to its service's health check (sync thread only).
  std::map<ServicePortKey, Contribution> contributions_;
  std::map<uint16_t, Served> served_;
  std::thread retry_;  // last: started when everything else is ready
};

}  // namespace sliceproxy::proxier
