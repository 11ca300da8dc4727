#include "proxier/ops/proxy_health.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <ctime>

namespace sliceproxy::proxier {

namespace json = boost::json;

bool nodeEligible(const Node* node) {
  if (!node) return true;
  if (node->beingDeleted) return false;
  for (const auto& t : node->taints) {
    if (t.key == kToBeDeletedTaint) return false;
  }
  return true;
}

std::string formatTime(std::chrono::system_clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  long frac = static_cast<long>(ns % 1'000'000'000);
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09d}Z", buf, frac);
}

ProxyHealth::ProxyHealth(std::chrono::nanoseconds timeout, std::function<Clock::time_point()> now)
    : timeout_(timeout), now_(std::move(now)) {}

void ProxyHealth::queued() {
  auto t = now_();
  std::lock_guard lock(mu_);
  if (!oldestQueued_) oldestQueued_ = t;
  newestQueued_ = t;
}

void ProxyHealth::updated(Clock::time_point syncStart) {
  auto t = now_();
  std::lock_guard lock(mu_);
  lastUpdated_ = t;
  everSynced_ = true;
  // A change queued while this sync ran is still pending; it has waited at most since the start.
  if (newestQueued_ && *newestQueued_ > syncStart) {
    oldestQueued_ = syncStart;
  } else {
    oldestQueued_.reset();
    newestQueued_.reset();
  }
}

void ProxyHealth::setNode(NodePtr node) {
  std::lock_guard lock(mu_);
  node_ = std::move(node);
}

void ProxyHealth::onSync(const SyncReport& report) {
  if (report.state) setNode(report.state->node().node);
  if (report.ok) updated(report.wallStart);
}

ProxyHealth::Status ProxyHealth::status() const {
  Status s;
  s.currentTime = now_();
  std::lock_guard lock(mu_);
  s.lastUpdated = lastUpdated_;
  s.everSynced = everSynced_;
  s.oldestPendingQueued = oldestQueued_;
  s.healthy = !oldestQueued_ || s.currentTime - *oldestQueued_ < timeout_;
  s.nodeEligible = nodeEligible(node_.get());
  return s;
}

void ProxyHealth::setSourceHealth(std::function<SourceHealth()> fn,
                                  std::chrono::nanoseconds progressTimeout) {
  std::lock_guard lock(mu_);
  sourceHealth_ = std::move(fn);
  sourceProgressTimeout_ = progressTimeout;
}

HttpResponse ProxyHealth::respond(bool livez) const {
  Status s = status();
  bool ok = s.healthy && (livez || s.nodeEligible);
  json::object family{{"healthy", s.healthy},
                      {"lastUpdated", s.everSynced ? formatTime(s.lastUpdated) : ""}};
  if (s.oldestPendingQueued) family["oldestPendingQueued"] = formatTime(*s.oldestPendingQueued);
  // One sync programs both families, so they share one status.
  json::object body{{"lastUpdated", s.everSynced ? formatTime(s.lastUpdated) : ""},
                    {"currentTime", formatTime(s.currentTime)},
                    {"nodeEligible", s.nodeEligible},
                    {"healthy", ok},
                    {"status", json::object{{"IPv4", family}, {"IPv6", family}}}};
  std::function<SourceHealth()> sourceHealth;
  std::chrono::nanoseconds progressTimeout;
  {
    std::lock_guard lock(mu_);
    sourceHealth = sourceHealth_;
    progressTimeout = sourceProgressTimeout_;
  }
  if (sourceHealth) {
    SourceHealth src = sourceHealth();
    json::object o{{"name", src.source}, {"connected", src.connected}};
    if (src.secondsSinceContact >= 0) o["secondsSinceContact"] = src.secondsSinceContact;
    if (src.secondsWithoutProgress >= 0) {
      const double limit = std::chrono::duration<double>(progressTimeout).count();
      const bool stuck = limit > 0 && src.secondsWithoutProgress > limit;
      o["secondsWithoutProgress"] = src.secondsWithoutProgress;
      o["stuck"] = stuck;
      if (stuck) {
        o["message"] = fmt::format(
            "{}: {} made no progress (no list, watch event or working watch) for {:.1f}s, "
            "longer than --source-progress-timeout {}s",
            src.source, src.lagging, src.secondsWithoutProgress, limit);
        if (!livez) {
          ok = false;
          body["healthy"] = false;
        }
      }
    }
    body["source"] = std::move(o);
  }
  return {ok ? 200u : 503u, "application/json", {}, json::serialize(body) + "\n"};
}

}  // namespace sliceproxy::proxier
