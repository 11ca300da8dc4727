#include "proxier/ops/healthcheck_ports.h"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <boost/json.hpp>
#include <stdexcept>
#include <system_error>

#include "proxier/core/node_state.h"

namespace sliceproxy::proxier {

namespace json = boost::json;

HealthCheckPorts::HealthCheckPorts(HttpServer& http, HealthCheckAddresses where,
                                   std::function<bool()> proxyHealthy,
                                   std::function<void()> onBindFailure)
    : http_(http),
      where_(std::move(where)),
      proxyHealthy_(std::move(proxyHealthy)),
      onBindFailure_(std::move(onBindFailure)),
      retry_([this] { retryLoop(); }) {}

HealthCheckPorts::~HealthCheckPorts() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [port, s] : served_) {
      for (int l : s.listeners) http_.close(l);
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
      if (s.listeners.empty()) bindLocked(port, s);
    }
  }
}

void HealthCheckPorts::bindLocked(uint16_t port, Served& s) {
  const auto hosts = where_.hosts(nodeIPs_);
  std::string where;
  try {
    if (hosts.empty()) {
      throw std::runtime_error(where_.primary && nodeIPs_.empty()
                                   ? "the Node's InternalIPs are not known yet"
                                   : "no local address matches --nodeport-addresses");
    }
    for (const auto& h : hosts) {
      where = HostPort{h, port}.str();
      s.listeners.push_back(http_.listen(
          HostPort{h, port}, [this, port](const HttpRequest&) { return respond(port); }));
    }
    spdlog::info("health check port {} for {}/{} listening on {}{}", port, s.service.ns,
                 s.service.name,
                 hosts.size() == 1 && hosts[0].empty() ? "every address"
                                                       : fmt::format("{}", fmt::join(hosts, ", ")),
                 s.failing ? " (bound after failing)" : "");
    s.failing = false;
  } catch (const std::exception& e) {
    // All or nothing: a port half bound would be retried and bind its other addresses twice.
    for (int l : s.listeners) http_.close(l);
    s.listeners.clear();
    if (onBindFailure_) onBindFailure_();
    if (!s.failing) {
      spdlog::error(
          "health check port {} for Service {}/{} (spec.healthCheckNodePort): cannot "
          "listen{}: {}; retrying every {}s, nothing else is affected",
          port, s.service.ns, s.service.name, where.empty() ? "" : " on " + where, e.what(),
          kRetry.count());
      s.failing = true;
    }
  }
}

void HealthCheckPorts::rebuild(const ServicePortView& view) {
  const auto& info = view.info();
  if (!info || !info->healthCheckNodePort) {
    contributions_.erase(view.key());
    return;
  }
  Contribution c{info->healthCheckNodePort, view.modes().local == LocalMode::Ready, {}};
  view.forEachEndpoint([&](const MergedEndpoint& e) {
    if (e.sets & epset::kLocal) ++c.localAddrs[e.key.ip];
  });
  contributions_[view.key()] = std::move(c);
}

// O(change): the port's local set moves by the Diff's endpoint changes. Under LocalMode::Ready
// the local set is exactly the local ready endpoints, so it gives kube-proxy's count.
void HealthCheckPorts::account(const ServicePortUpsert& u) {
  const ServicePortView& view = *u.view;
  auto it = contributions_.find(view.key());
  if (u.created || u.infoChanged || it == contributions_.end()) return rebuild(view);
  Contribution& c = it->second;
  c.ready = view.modes().local == LocalMode::Ready;
  for (const auto& ch : u.endpoints) {
    const bool was = ch.oldSets & epset::kLocal, now = ch.newSets & epset::kLocal;
    if (was == now) continue;
    if (now) {
      ++c.localAddrs[ch.key.ip];
    } else if (auto a = c.localAddrs.find(ch.key.ip); a != c.localAddrs.end() && --a->second == 0) {
      c.localAddrs.erase(a);
    }
  }
}

void HealthCheckPorts::onSync(const SyncReport& report) {
  if (report.full || !report.ok || !report.diff) {
    contributions_.clear();
    if (report.state) {
      for (const ServicePortView* v : report.state->state().ports) rebuild(*v);
    }
  } else {
    for (const auto& u : report.diff->upserts) account(u);
    for (const auto& d : report.diff->deletes) contributions_.erase(d.key);
  }
  std::vector<IpAddr> nodeIPs;
  if (report.state && report.state->node().node) {
    for (const auto& a : report.state->node().node->addresses) {
      if (a.type == "InternalIP" && a.ip) nodeIPs.push_back(*a.ip);
    }
  }
  std::lock_guard lock(mu_);
  if (report.ok) synced_ = true;
  if (where_.primary && nodeIPs != nodeIPs_) {
    // The addresses to listen on moved: re-bind every port on the new ones.
    nodeIPs_ = std::move(nodeIPs);
    for (auto& [port, s] : served_) {
      for (int l : s.listeners) http_.close(l);
      s.listeners.clear();
    }
  }
  reconcileLocked();
}

void HealthCheckPorts::reconcileLocked() {
  // Per port: its service and the local ready addresses per family. kube-proxy counts unique
  // addresses within one family (each family's proxier reports its own count for the same
  // server); a dual-stack pod is one endpoint, so the count is the larger family's.
  struct Want {
    ObjectKey service;
    std::set<IpAddr> addrs[2];
    uint32_t count() const {
      return static_cast<uint32_t>(std::max(addrs[0].size(), addrs[1].size()));
    }
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
    if (!c.ready) continue;
    auto& addrs = it->second.addrs[key.port.family == IpFamily::V4 ? 0 : 1];
    for (const auto& [a, n] : c.localAddrs) addrs.insert(a);
  }
  for (auto it = served_.begin(); it != served_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || !(w->second.service == it->second.service)) {
      for (int l : it->second.listeners) http_.close(l);
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
    s.localEndpoints = w.count();
    if (s.listeners.empty()) bindLocked(port, s);
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
    out.push_back({s.service, port, s.localEndpoints, !s.listeners.empty()});
  }
  return out;
}

}  // namespace sliceproxy::proxier
