// Issue 6: the pieces behind /healthz, /livez and /metrics, without sockets.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "proxier/ops/http_server.h"
#include "proxier/ops/metrics.h"
#include "proxier/ops/proxy_health.h"

using namespace sliceproxy::proxier;
using namespace std::chrono_literals;

namespace {

struct FakeClock {
  std::chrono::system_clock::time_point t{std::chrono::seconds(1'700'000'000)};
  std::function<std::chrono::system_clock::time_point()> fn() {
    return [this] { return t; };
  }
};

}  // namespace

TEST(OpsHealth, StaleQueuedUpdateIsUnhealthy) {
  FakeClock clock;
  ProxyHealth h(2s, clock.fn());
  EXPECT_TRUE(h.status().healthy);  // nothing queued yet
  h.queued();
  clock.t += 1999ms;
  EXPECT_TRUE(h.status().healthy);
  clock.t += 1ms;
  EXPECT_FALSE(h.status().healthy);
  EXPECT_EQ(h.respond(false).status, 503u);
  EXPECT_EQ(h.respond(true).status, 503u);
  h.updated(clock.t);
  EXPECT_TRUE(h.status().healthy);
  EXPECT_EQ(h.respond(true).status, 200u);
}

TEST(OpsHealth, ChangeQueuedDuringSyncStaysPending) {
  FakeClock clock;
  ProxyHealth h(2s, clock.fn());
  const auto syncStart = clock.t;
  clock.t += 100ms;
  h.queued();  // arrives after the sync took its changes
  h.updated(syncStart);
  clock.t += 2s;
  EXPECT_FALSE(h.status().healthy);
}

TEST(OpsHealth, NodeEligibility) {
  FakeClock clock;
  ProxyHealth h(2s, clock.fn());
  auto node = std::make_shared<Node>();
  h.setNode(node);
  EXPECT_EQ(h.respond(false).status, 200u);
  auto deleting = std::make_shared<Node>(*node);
  deleting->beingDeleted = true;
  h.setNode(deleting);
  EXPECT_EQ(h.respond(false).status, 503u);
  EXPECT_EQ(h.respond(true).status, 200u);  // livez ignores eligibility
  auto tainted = std::make_shared<Node>(*node);
  tainted->taints.push_back({"ToBeDeletedByClusterAutoscaler", "123", "NoSchedule"});
  h.setNode(tainted);
  auto body = boost::json::parse(h.respond(false).body).as_object();
  EXPECT_FALSE(body.at("nodeEligible").as_bool());
  EXPECT_FALSE(body.at("healthy").as_bool());
  EXPECT_TRUE(body.at("status").at("IPv4").at("healthy").as_bool());
}

TEST(OpsHealth, SourceFreshnessIsReportedButDoesNotFailHealthz) {
  FakeClock clock;
  ProxyHealth h(2s, clock.fn());
  h.updated(clock.t);
  h.setSourceHealth([] {
    return SourceHealth{"Kubernetes API https://10.0.0.1:6443", false, 42.5, -1, {}};
  });
  auto r = h.respond(false);
  EXPECT_EQ(r.status, 200u);
  auto body = boost::json::parse(r.body).as_object();
  EXPECT_EQ(body["source"].as_object()["connected"].as_bool(), false);
  EXPECT_EQ(body["source"].as_object()["secondsSinceContact"].as_double(), 42.5);
}

// Issue 12: a source that stopped making progress (a watch it can never resume) shows.
TEST(OpsHealth, SourceWithoutProgressBeyondTheBoundFailsHealthzButNotLivez) {
  FakeClock clock;
  ProxyHealth h(2s, clock.fn());
  h.updated(clock.t);
  double behind = 59.0;
  h.setSourceHealth(
      [&] {
        SourceHealth src{"Kubernetes API https://10.0.0.1:6443", false, 1.0, -1, {}};
        src.secondsWithoutProgress = behind;
        src.lagging = "EndpointSlices";
        return src;
      },
      60s);
  auto r = h.respond(false);
  EXPECT_EQ(r.status, 200u) << r.body;
  auto src = boost::json::parse(r.body).as_object()["source"].as_object();
  EXPECT_EQ(src["stuck"].as_bool(), false);
  EXPECT_EQ(src["secondsWithoutProgress"].as_double(), 59.0);

  behind = 61.5;
  r = h.respond(false);
  EXPECT_EQ(r.status, 503u) << r.body;
  auto body = boost::json::parse(r.body).as_object();
  EXPECT_EQ(body["healthy"].as_bool(), false);
  src = body["source"].as_object();
  EXPECT_EQ(src["stuck"].as_bool(), true);
  std::string msg(src["message"].as_string());
  EXPECT_NE(msg.find("Kubernetes API https://10.0.0.1:6443: EndpointSlices made no progress"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("61.5s"), std::string::npos) << msg;
  EXPECT_EQ(h.respond(true).status, 200u) << "livez: a restart would not help";

  // Back in progress: healthy again. And without a bound, never stuck.
  behind = 0.2;
  EXPECT_EQ(h.respond(false).status, 200u);
  behind = 1e6;
  h.setSourceHealth([&] { return SourceHealth{"x", true, -1, behind, "Services"}; });
  EXPECT_EQ(h.respond(false).status, 200u);
}

TEST(OpsHealth, FormatTime) {
  EXPECT_EQ(formatTime(std::chrono::system_clock::time_point(
                std::chrono::nanoseconds(1'700'000'000'000'000'007LL))),
            "2023-11-14T22:13:20.000000007Z");
}

TEST(OpsHttp, ParseHostPort) {
  std::string err;
  auto a = parseHostPort("0.0.0.0:10256", err);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port, 10256);
  auto b = parseHostPort("[::1]:10249", err);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->str(), "[::1]:10249");
  auto c = parseHostPort(":80", err);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->str(), "0.0.0.0:80");
  EXPECT_FALSE(parseHostPort("10256", err));
  EXPECT_FALSE(parseHostPort("1.2.3.4:70000", err));
  EXPECT_FALSE(parseHostPort("nothost:80", err));
  EXPECT_FALSE(parseHostPort("::1:80", err));
  EXPECT_NE(err.find("brackets"), std::string::npos);
}

TEST(OpsHttp, Query) {
  HttpRequest r{"GET", "/debug/explain?address=10.0.0.1%3A80&from=a+b&x"};
  EXPECT_EQ(r.path(), "/debug/explain");
  EXPECT_EQ(r.query("address"), "10.0.0.1:80");
  EXPECT_EQ(r.query("from"), "a b");
  EXPECT_EQ(r.query("x"), "");
  EXPECT_FALSE(r.query("y"));
}

TEST(OpsMetrics, RenderHasFamiliesAndFeeds) {
  Metrics m("dry-run", nullptr);
  m.healthServed(false, 200);
  m.healthServed(true, 503);
  m.conntrackEntriesDeleted(3);
  m.conntrackErrors(2);
  m.relisted("services");
  auto text = m.render();
  EXPECT_NE(text.find("kubeproxy_proxy_healthz_total{code=\"200\"} 1"), std::string::npos);
  EXPECT_NE(text.find("kubeproxy_proxy_livez_total{code=\"503\"} 1"), std::string::npos);
  EXPECT_NE(text.find("sliceproxy_conntrack_entries_deleted_total 3"), std::string::npos);
  EXPECT_NE(text.find("sliceproxy_conntrack_cleanup_errors_total 2"), std::string::npos);
  EXPECT_NE(text.find("sliceproxy_watch_relists_total{resource=\"services\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram"),
            std::string::npos);
  EXPECT_NE(text.find("kubeproxy_sync_proxy_rules_endpoint_changes_pending 0"), std::string::npos);
}
