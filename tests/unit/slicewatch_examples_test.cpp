// Every file in examples/ decodes with zero rejections, and the cluster it describes is the one
// examples/README.md promises.

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "slice-watch/manifest_file.h"

namespace sliceproxy::slicewatch {
namespace {

namespace fs = std::filesystem;

struct Cluster {
  std::map<std::string, proxier::ServicePtr> services;  // by namespace/name
  std::map<std::string, proxier::SlicePtr> slices;
  std::map<std::string, proxier::NodePtr> nodes;
  size_t files = 0;
};

Cluster loadExamples() {
  Cluster c;
  for (const auto& entry : fs::directory_iterator(fs::path(SLICEPROXY_SOURCE_DIR) / "examples")) {
    if (!manifestFormat(entry.path().filename().string())) continue;
    ++c.files;
    for (auto& r : decodeManifestFile(entry.path(), DecodeOptions{entry.path().string()},
                                      kDefaultManifestMaxFileBytes)) {
      if (auto* rej = std::get_if<proxier::Rejection>(&r)) {
        ADD_FAILURE() << rej->describe();
        continue;
      }
      auto& obj = std::get<DecodedObject>(r);
      std::string key = obj.key.str();
      if (auto* s = std::get_if<proxier::ServicePtr>(&obj.object)) {
        EXPECT_TRUE(c.services.emplace(key, *s).second) << key;
      } else if (auto* sl = std::get_if<proxier::SlicePtr>(&obj.object)) {
        EXPECT_TRUE(c.slices.emplace(key, *sl).second) << key;
      } else {
        EXPECT_TRUE(c.nodes.emplace(key, std::get<proxier::NodePtr>(obj.object)).second) << key;
      }
    }
  }
  return c;
}

std::vector<proxier::SlicePtr> slicesOf(const Cluster& c, const proxier::ObjectKey& svc) {
  std::vector<proxier::SlicePtr> out;
  for (const auto& [key, s] : c.slices) {
    if (s->serviceKey() == svc) out.push_back(s);
  }
  return out;
}

TEST(SlicewatchExamples, EveryFileDecodesWithoutRejections) {
  Cluster c = loadExamples();
  EXPECT_GE(c.files, 4u);
  EXPECT_EQ(c.nodes.size(), 2u);
  EXPECT_GE(c.services.size(), 6u);
  // Every slice belongs to a service that exists.
  for (const auto& [key, s] : c.slices) {
    EXPECT_TRUE(c.services.contains(s->serviceKey().str())) << key;
  }
}

TEST(SlicewatchExamples, DescribeTheClusterTheReadmePromises) {
  Cluster c = loadExamples();
  auto nodeA = c.nodes.at("node-a");
  EXPECT_EQ(nodeA->zone(), "zone-a");
  ASSERT_FALSE(nodeA->addresses.empty());
  EXPECT_EQ(nodeA->addresses[0].ip, proxier::IpAddr::parse("10.0.0.10"));
  EXPECT_EQ(c.nodes.at("node-b")->zone(), "zone-b");

  auto web = c.services.at("default/web");
  EXPECT_EQ(web->ports[0].port, 80);
  EXPECT_EQ(web->ports[0].targetPort.number, 8080);
  auto webSlices = slicesOf(c, web->key);
  ASSERT_EQ(webSlices.size(), 2u);
  EXPECT_EQ(webSlices[0]->endpoints.size() + webSlices[1]->endpoints.size(), 3u);
  EXPECT_FALSE(webSlices[0]->endpoints[0].zoneHints.empty());

  auto shop = c.services.at("shop/shop");
  EXPECT_EQ(shop->type, proxier::ServiceType::NodePort);
  bool terminating = false;
  for (const auto& s : slicesOf(c, shop->key)) {
    for (const auto& ep : s->endpoints) {
      terminating |= ep.conditions.ready == false && ep.conditions.serving == true &&
                     ep.conditions.terminating == true;
    }
  }
  EXPECT_TRUE(terminating);

  auto gw = c.services.at("edge/gateway");
  EXPECT_EQ(gw->type, proxier::ServiceType::LoadBalancer);
  EXPECT_EQ(gw->externalTrafficPolicy, proxier::TrafficPolicy::Local);
  EXPECT_NE(gw->healthCheckNodePort, 0);
  EXPECT_FALSE(gw->loadBalancerSourceRanges.empty());
  ASSERT_EQ(gw->loadBalancerIngress.size(), 1u);
  EXPECT_EQ(gw->loadBalancerIngress[0].ip, proxier::IpAddr::parse("203.0.113.10"));

  EXPECT_EQ(c.services.at("default/sessions")->sessionAffinity, proxier::SessionAffinity::ClientIP);
  EXPECT_EQ(c.services.at("default/sessions")->affinityTimeoutSeconds, 600u);

  auto dns = c.services.at("kube-system/kube-dns");
  ASSERT_EQ(dns->ports.size(), 2u);
  EXPECT_EQ(dns->ports[0].port, 53);
  EXPECT_EQ(dns->ports[1].port, 53);
  EXPECT_NE(dns->ports[0].protocol, dns->ports[1].protocol);

  auto api = c.services.at("default/api");
  ASSERT_EQ(api->clusterIPs.size(), 2u);
  EXPECT_NE(api->clusterIPs[0].family, api->clusterIPs[1].family);
  bool v6 = false;
  for (const auto& s : slicesOf(c, api->key)) v6 |= s->addressType == proxier::AddressType::IPv6;
  EXPECT_TRUE(v6);
}

}  // namespace
}  // namespace sliceproxy::slicewatch
