#pragma once
// healthCheckNodePort servers: one HTTP listener per externalTrafficPolicy=Local
// LoadBalancer service (one per address when --nodeport-addresses narrows them), telling the
// cloud load balancer whether this node has local endpoints. 200 with the count (and
// X-Load-Balancing-Endpoint-Weight) iff at least one local ready endpoint exists, the proxy is
// healthy and the first sync has completed; 503 otherwise. The count is of endpoints (pods),
// as kube-proxy's: unique local ready addresses of the service, not address x port x family.
// Listeners open and close as services come and go, driven by the syncs.

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "proxier/core/proxier.h"
#include "proxier/ops/healthcheck_addresses.h"
#include "proxier/ops/http_server.h"

namespace sliceproxy::proxier {

class HealthCheckPorts : public SyncListener {
 public:
  // Binds listeners on `where` (every address, or those --nodeport-addresses selects);
  // proxyHealthy is asked on every request (kube-proxy's serviceProxyHealthy). A port that
  // cannot be bound (taken by another program, sliceproxy's own healthz port, or no local
  // address selected yet) is logged once with its Service, reported through onBindFailure, and
  // retried every kRetry; it never affects anything else.
  HealthCheckPorts(HttpServer& http, HealthCheckAddresses where, std::function<bool()> proxyHealthy,
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
  struct Contribution {
    uint16_t port = 0;
    bool ready = false;  // the local set holds ready endpoints (not the terminating fallback)
    // Addresses in the port's local set, with how many (address, target port) endpoints each.
    std::map<IpAddr, uint32_t> localAddrs;
  };
  struct Served {
    ObjectKey service;
    uint32_t localEndpoints = 0;
    std::vector<int> listeners;  // empty when binding failed (retried every kRetry)
    bool failing = false;        // the failure was logged; log again only after a success
  };
  void rebuild(const ServicePortView& view);
  void account(const ServicePortUpsert& u);
  void reconcileLocked();
  void bindLocked(uint16_t port, Served& s);
  void retryLoop();

  HttpServer& http_;
  const HealthCheckAddresses where_;
  std::vector<IpAddr> nodeIPs_;  // the Node's InternalIPs, for --nodeport-addresses=primary
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
