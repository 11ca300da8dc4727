#pragma once
// Everything an operator talks to besides the data plane: /healthz and /livez, the
// healthCheckNodePort servers, /metrics, and the loopback-only debug endpoints (/debug/state,
// /debug/explain). main() builds one and starts it before the first sync.

#include <memory>
#include <optional>
#include <string>

#include "proxier/config/config.h"
#include "proxier/ops/healthcheck_ports.h"
#include "proxier/ops/http_server.h"
#include "proxier/ops/metrics.h"
#include "proxier/ops/proxy_health.h"

namespace sliceproxy::proxier {

// Checks the bind addresses and ports in cfg; "" when valid, else one message naming the flag.
std::string validateOpsConfig(const Config& cfg);

class Ops {
 public:
  Ops(const Config& cfg, ChangeTracker& tracker, Proxier& proxier, const Backend& backend);
  ~Ops();

  // Binds every configured listener; returns "" or what could not be bound.
  std::string start();
  void stop();
  // The tracker recorded a change (called from its onChange hook).
  void queued();

  Metrics& metrics() { return *metrics_; }
  ProxyHealth& health() { return *health_; }

 private:
  HttpResponse debug(const HttpRequest& req);

  const Config& cfg_;
  ChangeTracker& tracker_;
  Proxier& proxier_;
  const Backend& backend_;
  HttpServer http_;
  std::unique_ptr<ProxyHealth> health_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<HealthCheckPorts> hcPorts_;
};

}  // namespace sliceproxy::proxier
