#include "proxier/ops/healthcheck_ports.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <system_error>

#include "proxier/core/node_state.h"

namespace sliceproxy::proxier {

namespace json = boost::json;

HealthCheckPorts::HealthCheckPorts(HttpServer& http, std::string bindHost,
                                   std::function<bool()> proxyHealthy)
    : http_(http), bindHost_(std::move(bindHost)), proxyHealthy_(std::move(proxyHealthy)) {}

HealthCheckPorts::~HealthCheckPorts() {
  std::lock_guard lock(mu_);
  for (auto& [port, s] : served_) {
    if (s.listener) http_.close(s.listener);
  }
}

void HealthCheckPorts::account(const ServicePortView& view) {
  const auto& info = view.info();
  if (info && info->healthCheckNodePort) {
    contributions_[view.key()] = {info->healthCheckNodePort, view.counters().localReady};
  } else {
    contributions_.erase(view.key());
  }
}

void HealthCheckPorts::onSync(const SyncReport& report) {
  if (report.full || !report.ok || !report.diff) {
    contributions_.clear();
    if (report.state) {
      for (const ServicePortView* v : report.state->state().ports) account(*v);
    }
  } else {
    for (const auto& u : report.diff->upserts) account(*u.view);
    for (const auto& d : report.diff->deletes) contributions_.erase(d.key);
  }
  std::lock_guard lock(mu_);
  if (report.ok) synced_ = true;
  reconcileLocked();
}

void HealthCheckPorts::reconcileLocked() {
  std::map<uint16_t, std::pair<ObjectKey, uint32_t>> want;
  for (const auto& [key, c] : contributions_) {
    auto [it, fresh] = want.try_emplace(c.port, key.service, 0);
    if (!fresh && !(it->second.first == key.service)) {
      spdlog::warn("healthCheckNodePort {} claimed by {}/{} and {}/{}; keeping the first", c.port,
                   it->second.first.ns, it->second.first.name, key.service.ns, key.service.name);
      continue;
    }
    it->second.second += c.localReady;
  }
  for (auto it = served_.begin(); it != served_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || !(w->second.first == it->second.service)) {
      if (it->second.listener) http_.close(it->second.listener);
      spdlog::info("health check port {} for {}/{} closed", it->first, it->second.service.ns,
                   it->second.service.name);
      it = served_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [port, w] : want) {
    Served& s = served_[port];
    s.service = w.first;
    s.localEndpoints = w.second;
    if (s.listener) continue;
    try {
      const uint16_t p = port;
      s.listener = http_.listen(HostPort{bindHost_, port},
                                [this, p](const HttpRequest&) { return respond(p); });
      spdlog::info("health check port {} for {}/{} listening", port, w.first.ns, w.first.name);
    } catch (const std::system_error& e) {
      spdlog::error("health check port {} for {}/{}: cannot listen: {}", port, w.first.ns,
                    w.first.name, e.what());
    }
  }
}

HttpResponse HealthCheckPorts::respond(uint16_t port) const {
  const bool proxyHealthy = proxyHealthy_ ? proxyHealthy_() : true;
  std::lock_guard lock(mu_);
  auto it = served_.find(port);
  if (it == served_.end()) return {404, "text/plain; charset=utf-8", {}, "no such service\n"};
  const Served& s = it->second;
  // Before the first completed sync the rules do not exist yet: never attract traffic.
  const uint32_t n = synced_ ? s.localEndpoints : 0;
  json::object body{{"service", json::object{{"namespace", s.service.ns}, {"name", s.service.name}}},
                    {"localEndpoints", n},
                    {"serviceProxyHealthy", proxyHealthy}};
  HttpResponse r{n > 0 && proxyHealthy ? 200u : 503u, "application/json", {},
                 json::serialize(body) + "\n"};
  if (r.status == 200) r.headers.emplace_back("X-Load-Balancing-Endpoint-Weight", std::to_string(n));
  return r;
}

std::vector<HealthCheckPorts::Entry> HealthCheckPorts::entries() const {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  for (const auto& [port, s] : served_) {
    out.push_back({s.service, port, s.localEndpoints, s.listener != 0});
  }
  return out;
}

}  // namespace sliceproxy::proxier
