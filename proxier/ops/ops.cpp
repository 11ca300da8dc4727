#include "proxier/ops/ops.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <thread>

#include "proxier/ops/explain.h"
#include "proxier/ops/view_json.h"

namespace sliceproxy::proxier {

namespace json = boost::json;

namespace {
constexpr std::chrono::seconds kListenRetry{10};
}  // namespace

std::string validateOpsConfig(const Config& cfg) {
  std::string error;
  for (auto [flag, value] : {std::pair{"--healthz-bind-address", &cfg.healthzBindAddress},
                             std::pair{"--metrics-bind-address", &cfg.metricsBindAddress}}) {
    if (!value->empty() && !parseHostPort(*value, error)) return std::string(flag) + ": " + error;
  }
  if (cfg.debugPort < 0 || cfg.debugPort > 65535) {
    return "--debug-port: " + std::to_string(cfg.debugPort) + " is not a port (0..65535)";
  }
  return "";
}

Ops::Ops(const Config& cfg, ChangeTracker& tracker, Proxier& proxier, const Backend& backend)
    : cfg_(cfg), tracker_(tracker), proxier_(proxier), backend_(backend) {
  health_ = std::make_unique<ProxyHealth>(2 * cfg.syncPeriod);
  metrics_ = std::make_unique<Metrics>(backend.name(), &tracker);
  hcPorts_ = std::make_unique<HealthCheckPorts>(
      http_, HealthCheckAddresses::fromFlag(cfg.nodePortAddresses),
      [this] { return health_->healthy(); }, [this] { metrics_->healthCheckBindFailed(); });
  proxier.addListener(health_.get());
  proxier.addListener(metrics_.get());
  proxier.addListener(hcPorts_.get());
}

Ops::~Ops() {
  stop();
}

void Ops::queued() {
  // Like kube-proxy, nothing counts as queued before the sources have listed everything.
  if (!tracker_.allSourcesSynced()) return;
  health_->queued();
  metrics_->queued();
}

std::string Ops::start() {
  std::string error;
  // Right after a kill -9 the old process may hold its ports for a moment, and systemd or the
  // kubelet restart at once: an address in use is retried for kListenRetry before giving up.
  auto open = [&](const char* what, const char* flag, const std::string& addr,
                  HttpHandler h) -> bool {
    if (addr.empty()) return true;
    auto hp = parseHostPort(addr, error);
    if (!hp) return false;
    const auto deadline = std::chrono::steady_clock::now() + kListenRetry;
    for (bool told = false;; told = true) {
      try {
        http_.listen(*hp, h);
        spdlog::info("{} listening on {}", what, hp->str());
        return true;
      } catch (const std::system_error& e) {
        const bool inUse = e.code().value() == EADDRINUSE;
        if (!inUse || std::chrono::steady_clock::now() >= deadline) {
          error = fmt::format("{} {}: cannot listen: {}{}", flag, hp->str(),
                              std::strerror(e.code().value()),
                              inUse ? fmt::format(" (retried for {}s)", kListenRetry.count()) : "");
          return false;
        }
        if (!told) {
          spdlog::warn("{} {}: address in use; retrying for up to {}s", flag, hp->str(),
                       kListenRetry.count());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    }
  };
  auto notFound = HttpResponse{404, "text/plain; charset=utf-8", {}, "not found\n"};
  bool sameAddress = cfg_.healthzBindAddress == cfg_.metricsBindAddress;
  auto healthHandler = [this](const HttpRequest& r) -> std::optional<HttpResponse> {
    auto p = r.path();
    if (p == "/healthz" || p == "/livez") {
      const bool livez = p == "/livez";
      auto res = health_->respond(livez);
      metrics_->healthServed(livez, res.status);
      return res;
    }
    return std::nullopt;
  };
  if (!open("healthz server", "--healthz-bind-address", cfg_.healthzBindAddress,
            [healthHandler, notFound, this, sameAddress](const HttpRequest& r) {
              if (auto res = healthHandler(r)) return *res;
              if (sameAddress && r.path() == "/metrics") return metrics_->respond();
              return notFound;
            }))
    return error;
  if (!sameAddress && !open("metrics server", "--metrics-bind-address", cfg_.metricsBindAddress,
                            [healthHandler, notFound, this](const HttpRequest& r) {
                              // kube-proxy also answers /healthz and /livez on the metrics port.
                              if (r.path() == "/metrics") return metrics_->respond();
                              if (auto res = healthHandler(r)) return *res;
                              return notFound;
                            }))
    return error;
  if (cfg_.debugPort && !open("debug server", "--debug-port",
                              HostPort{"127.0.0.1", static_cast<uint16_t>(cfg_.debugPort)}.str(),
                              [this](const HttpRequest& r) { return debug(r); }))
    return error;
  http_.start();
  return "";
}

void Ops::stop() {
  http_.stop();
}

HttpResponse Ops::debug(const HttpRequest& req) {
  if (req.path() == "/debug/state") {
    json::array ports;
    json::object node;
    {
      std::lock_guard lock(proxier_.stateMutex());
      const NodeState& st = proxier_.nodeState();
      for (const ServicePortView* v : st.state().ports) {
        auto o = viewToJson(*v);
        json::array objs;
        for (auto& name : backend_.kernelObjects(v->key())) objs.emplace_back(name);
        o["kernelObjects"] = std::move(objs);
        ports.emplace_back(std::move(o));
      }
      node = nodeToJson(st.node());
    }
    auto stats = proxier_.stats();
    json::object body{{"backend", backend_.name()},    {"node", std::move(node)},
                      {"syncs", stats.syncs},          {"fullSyncs", stats.fullSyncs},
                      {"failedSyncs", stats.failures}, {"servicePorts", std::move(ports)}};
    json::array hc;
    for (const auto& e : hcPorts_->entries()) {
      hc.emplace_back(json::object{{"service", e.service.str()},
                                   {"port", e.port},
                                   {"localEndpoints", e.localEndpoints},
                                   {"listening", e.listening}});
    }
    body["healthCheckPorts"] = std::move(hc);
    return {200, "application/json", {}, json::serialize(body) + "\n"};
  }
  if (req.path() == "/debug/explain") {
    std::string error;
    auto q =
        parseExplainTarget(req.query("target").value_or(""), req.query("from").value_or(""), error);
    if (!q)
      return {400, "application/json", {}, json::serialize(json::object{{"error", error}}) + "\n"};
    json::object e;
    {
      std::lock_guard lock(proxier_.stateMutex());
      e = explain(*q, proxier_.nodeState(), backend_, cfg_.network);
    }
    return {200, "application/json", {}, json::serialize(e) + "\n"};
  }
  return {404, "text/plain; charset=utf-8", {}, "not found\n"};
}

}  // namespace sliceproxy::proxier
