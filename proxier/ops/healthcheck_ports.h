#pragma once
// healthCheckNodePort servers: one HTTP listener per externalTrafficPolicy=Local
// LoadBalancer service, telling the cloud load balancer whether this node has local endpoints.
// 200 with the count (and X-Load-Balancing-Endpoint-Weight) iff at least one local ready
// endpoint exists, the proxy is healthy and the first sync has completed; 503 otherwise.
// Listeners open and close as services come and go, driven by the syncs.

#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "proxier/ops/http_server.h"
#include "proxier/core/proxier.h"

namespace sliceproxy::proxier {

class HealthCheckPorts : public SyncListener {
 public:
  // Binds listeners on bindHost (""/0.0.0.0 = every address); proxyHealthy is asked on every
  // request (kube-proxy's serviceProxyHealthy).
  HealthCheckPorts(HttpServer& http, std::string bindHost, std::function<bool()> proxyHealthy);
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
  struct Contribution {
    uint16_t port = 0;
    uint32_t localReady = 0;
  };
  struct Served {
    ObjectKey service;
    uint32_t localEndpoints = 0;
    int listener = 0;  // 0 when binding failed (retried on the next sync)
  };
  void account(const ServicePortView& view);
  void reconcileLocked();

  HttpServer& http_;
  const std::string bindHost_;
  const std::function<bool()> proxyHealthy_;
  mutable std::mutex mu_;
  bool synced_ = false;
  // Per service port, what it adds to its service's health check (sync thread only).
  std::map<ServicePortKey, Contribution> contributions_;
  std::map<uint16_t, Served> served_;
};

}  // namespace sliceproxy::proxier
