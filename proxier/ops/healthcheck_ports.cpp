#include "proxier/ops/healthcheck_ports.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <system_error>

#include "proxier/core/node_state.h"

namespace sliceproxy::proxier {

namespace json = boost::json;

HealthCheckPorts::HealthCheckPorts(HttpServer& http, std::vector<std::string> bindHosts,
                                   std::function<bool()> proxyHealthy,
                                   std::function<void()> onBindFailure)
    : http_(http),
      bindHosts_(bindHosts.empty() ? std::vector<std::string>{""} : std::move(bindHosts)),
      proxyHealthy_(std::move(proxyHealthy)),
      onBindFailure_(std::move(onBindFailure)),
      retry_([this] { retryLoop(); }) {}

HealthCheckPorts::~HealthCheckPorts() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [port, s] : served_) {
      for (int l : s.listeners) {
        if (l) http_.close(l);
      }
    }
  }
  wake_.notify_all();
  retry_.join();
}

void HealthCheckPorts::retryLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, kRetry);
    if (stopping_) break;
    for (auto& [port, s] : served_) {
      if (!s.listening()) bindLocked(port, s);
    }
  }
}

void HealthCheckPorts::bindLocked(uint16_t port, Served& s) {
  s.listeners.resize(bindHosts_.size(), 0);
  for (size_t i = 0; i < bindHosts_.size(); ++i) {
    if (s.listeners[i]) continue;
    const HostPort where{bindHosts_[i], port};
    try {
      s.listeners[i] =
          http_.listen(where, [this, port](const HttpRequest&) { return respond(port); });
    } catch (const std::exception& e) {
      if (onBindFailure_) onBindFailure_();
      if (!s.failing) {
        spdlog::error(
            "health check port {} for Service {}/{} (spec.healthCheckNodePort): cannot "
            "listen on {}: {}; retrying every {}s, nothing else is affected",
            port, s.service.ns, s.service.name, where.str(), e.what(), kRetry.count());
        s.failing = true;
      }
      return;
    }
  }
  spdlog::info("health check port {} for {}/{} listening{}", port, s.service.ns, s.service.name,
               s.failing ? " (bound after failing)" : "");
  s.failing = false;
}

void HealthCheckPorts::account(const ServicePortView& view) {
  const auto& info = view.info();
  if (info && info->healthCheckNodePort) {
    Contribution c{info->healthCheckNodePort, view.key().port.family, {}};
    if (view.counters().localReady > 0) {
      view.forEachEndpoint([&](const MergedEndpoint& e) {
        if (e.isLocal() && e.ready()) c.localReady.push_back(e.key.ip);
      });
      std::sort(c.localReady.begin(), c.localReady.end());
      c.localReady.erase(std::unique(c.localReady.begin(), c.localReady.end()), c.localReady.end());
    }
    contributions_[view.key()] = std::move(c);
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
  struct Want {
    ObjectKey service;
    std::set<IpAddr> endpoints[2];  // by family
  };
  std::map<uint16_t, Want> want;
  for (const auto& [key, c] : contributions_) {
    auto [it, fresh] = want.try_emplace(c.port, Want{key.service, {}});
    if (!fresh && !(it->second.service == key.service)) {
      if (claimWarned_.emplace(c.port, key.service).second) {
        spdlog::warn("healthCheckNodePort {} claimed by {}/{} and {}/{}; keeping the first", c.port,
                     it->second.service.ns, it->second.service.name, key.service.ns,
                     key.service.name);
      }
      continue;
    }
    it->second.endpoints[c.family == IpFamily::V4 ? 0 : 1].insert(c.localReady.begin(),
                                                                  c.localReady.end());
  }
  for (auto it = served_.begin(); it != served_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || !(w->second.service == it->second.service)) {
      for (int l : it->second.listeners) {
        if (l) http_.close(l);
      }
      spdlog::info("health check port {} for {}/{} closed", it->first, it->second.service.ns,
                   it->second.service.name);
      it = served_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [port, w] : want) {
    Served& s = served_[port];
    if (!(s.service == w.service)) s.failing = false;
    s.service = w.service;
    s.localEndpoints =
        static_cast<uint32_t>(std::max(w.endpoints[0].size(), w.endpoints[1].size()));
    if (!s.listening()) bindLocked(port, s);
  }
  // A claim that no longer collides may be reported again if it collides again later.
  for (auto it = claimWarned_.begin(); it != claimWarned_.end();) {
    auto w = want.find(it->first);
    it = (w == want.end() || w->second.service == it->second) ? claimWarned_.erase(it) : ++it;
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
  json::object body{
      {"service", json::object{{"namespace", s.service.ns}, {"name", s.service.name}}},
      {"localEndpoints", n},
      {"serviceProxyHealthy", proxyHealthy}};
  HttpResponse r{
      n > 0 && proxyHealthy ? 200u : 503u, "application/json", {}, json::serialize(body) + "\n"};
  if (r.status == 200)
    r.headers.emplace_back("X-Load-Balancing-Endpoint-Weight", std::to_string(n));
  return r;
}

std::vector<HealthCheckPorts::Entry> HealthCheckPorts::entries() const {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  for (const auto& [port, s] : served_) {
    out.push_back({s.service, port, s.localEndpoints, s.listening()});
  }
  return out;
}

}  // namespace sliceproxy::proxier
