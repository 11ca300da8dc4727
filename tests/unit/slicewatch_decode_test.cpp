// JSON decoding of Service, EndpointSlice and Node: every decode rule and every rejection rule.

#include <gtest/gtest.h>

#include <string>

#include "slice-watch/json_decoder.h"
#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch {
namespace {

using proxier::IpAddr;
using proxier::Rejection;

IpAddr ip(std::string_view s) {
  return IpAddr::parse(s).value();
}

std::vector<DecodeResult> decode(std::string_view json) {
  return decodeJsonDocument(json, DecodeOptions{"test.json"});
}

DecodeResult one(std::string_view json) {
  auto results = decode(json);
  EXPECT_EQ(results.size(), 1u) << json;
  if (results.empty()) return Rejection{};
  return results[0];
}

std::string describe(const DecodeResult& r) {
  if (auto* rej = std::get_if<Rejection>(&r)) return "rejected: " + rej->describe();
  return "decoded " + std::get<DecodedObject>(r).kind;
}

template <class T>
std::shared_ptr<const T> as(const DecodeResult& r) {
  auto* obj = std::get_if<DecodedObject>(&r);
  if (!obj) {
    ADD_FAILURE() << describe(r);
    return std::make_shared<const T>();
  }
  return std::get<std::shared_ptr<const T>>(obj->object);
}

Rejection rejectionOf(const DecodeResult& r) {
  auto* rej = std::get_if<Rejection>(&r);
  if (!rej) {
    ADD_FAILURE() << "expected a rejection, got " << describe(r);
    return {};
  }
  return *rej;
}

std::string service(std::string_view spec, std::string_view more = "") {
  return std::string(R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"web",)") +
         R"("namespace":"shop"},"spec":{)" + std::string(spec) + "}" + std::string(more) + "}";
}

std::string sliceJson(std::string_view body, std::string_view addressType = "IPv4") {
  return std::string(R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",)") +
         R"("metadata":{"name":"web-abc","namespace":"default",)" +
         R"("labels":{"kubernetes.io/service-name":"web"}},"addressType":")" +
         std::string(addressType) + "\"," + std::string(body) + "}";
}

std::string node(std::string_view body) {
  return std::string(R"({"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a"},)") +
         std::string(body) + "}";
}

void expectRejected(const std::string& json, std::string_view field, std::string_view reason) {
  Rejection r = rejectionOf(one(json));
  EXPECT_EQ(r.field, field) << json;
  EXPECT_EQ(r.reason, reason) << json << "\n" << r.describe();
  EXPECT_EQ(r.origin, "test.json");
  EXPECT_FALSE(r.message.empty());
}

// ---------------------------------------------------------------------------------------------
// Service

TEST(SlicewatchDecodeService, AllFields) {
  auto svc = as<proxier::Service>(one(R"({
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "42",
                 "labels": {"app": "web", "tier": "front"}},
    "spec": {
      "type": "LoadBalancer",
      "clusterIP": "10.96.0.10",
      "clusterIPs": ["10.96.0.10", "fd00:96::10"],
      "ports": [
        {"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080, "targetPort": 8080},
        {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns"}
      ],
      "externalIPs": ["192.168.1.5"],
      "loadBalancerSourceRanges": ["203.0.113.0/24", "10.1.2.3/8"],
      "externalTrafficPolicy": "Local",
      "internalTrafficPolicy": "Local",
      "sessionAffinity": "ClientIP",
      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
      "healthCheckNodePort": 32000,
      "trafficDistribution": "PreferClose",
      "externalName": ""
    },
    "status": {"loadBalancer": {"ingress": [
      {"ip": "203.0.113.10", "ipMode": "Proxy"},
      {"hostname": "lb.example.com"}
    ]}}
  })"));
  EXPECT_EQ(svc->key, (proxier::ObjectKey{"shop", "web"}));
  EXPECT_EQ(svc->resourceVersion, "42");
  ASSERT_NE(svc->labels.get("tier"), nullptr);
  EXPECT_EQ(*svc->labels.get("tier"), "front");
  EXPECT_EQ(svc->type, proxier::ServiceType::LoadBalancer);
  EXPECT_FALSE(svc->headless);
  EXPECT_EQ(svc->clusterIPs, (std::vector<IpAddr>{ip("10.96.0.10"), ip("fd00:96::10")}));
  ASSERT_EQ(svc->ports.size(), 2u);
  EXPECT_EQ(svc->ports[0].name, "http");
  EXPECT_EQ(svc->ports[0].protocol, proxier::Protocol::TCP);
  EXPECT_EQ(svc->ports[0].port, 80);
  EXPECT_EQ(svc->ports[0].nodePort, 30080);
  EXPECT_EQ(svc->ports[0].targetPort.number, 8080);
  EXPECT_EQ(svc->ports[1].protocol, proxier::Protocol::UDP);
  EXPECT_EQ(svc->ports[1].targetPort.number, std::nullopt);
  EXPECT_EQ(svc->ports[1].targetPort.name, "dns");
  EXPECT_EQ(svc->externalIPs, std::vector<IpAddr>{ip("192.168.1.5")});
  ASSERT_EQ(svc->loadBalancerSourceRanges.size(), 2u);
  EXPECT_EQ(svc->loadBalancerSourceRanges[0].str(), "203.0.113.0/24");
  EXPECT_EQ(svc->loadBalancerSourceRanges[1].str(), "10.0.0.0/8");  // host bits accepted
  EXPECT_EQ(svc->externalTrafficPolicy, proxier::TrafficPolicy::Local);
  EXPECT_EQ(svc->internalTrafficPolicy, proxier::TrafficPolicy::Local);
  EXPECT_EQ(svc->sessionAffinity, proxier::SessionAffinity::ClientIP);
  EXPECT_EQ(svc->affinityTimeoutSeconds, 600u);
  EXPECT_EQ(svc->healthCheckNodePort, 32000);
  EXPECT_EQ(svc->trafficDistribution, "PreferClose");
  ASSERT_EQ(svc->loadBalancerIngress.size(), 2u);
  EXPECT_EQ(svc->loadBalancerIngress[0].ip, ip("203.0.113.10"));
  EXPECT_EQ(svc->loadBalancerIngress[0].ipMode, proxier::LoadBalancerIpMode::Proxy);
  EXPECT_EQ(svc->loadBalancerIngress[1].ip, std::nullopt);
  EXPECT_EQ(svc->loadBalancerIngress[1].hostname, "lb.example.com");
  EXPECT_EQ(svc->loadBalancerIngress[1].ipMode, proxier::LoadBalancerIpMode::VIP);
}

TEST(SlicewatchDecodeService, Defaults) {
  auto r = one(R"({"kind":"Service","metadata":{"name":"web"},
                   "spec":{"clusterIP":"10.96.0.10","ports":[{"port":80}]}})");
  auto* obj = std::get_if<DecodedObject>(&r);
  ASSERT_NE(obj, nullptr) << describe(r);
  EXPECT_EQ(obj->kind, "Service");
  EXPECT_EQ(obj->key, (proxier::ObjectKey{"default", "web"}));
  auto svc = as<proxier::Service>(r);
  EXPECT_EQ(svc->key.ns, "default");
  EXPECT_EQ(svc->type, proxier::ServiceType::ClusterIP);
  EXPECT_EQ(svc->clusterIPs, std::vector<IpAddr>{ip("10.96.0.10")});
  EXPECT_EQ(svc->ports[0].protocol, proxier::Protocol::TCP);
  EXPECT_EQ(svc->ports[0].name, "");
  EXPECT_EQ(svc->ports[0].nodePort, 0);
  EXPECT_EQ(svc->ports[0].targetPort.number, 80);  // the API server's default
  EXPECT_EQ(svc->externalTrafficPolicy, proxier::TrafficPolicy::Cluster);
  EXPECT_EQ(svc->internalTrafficPolicy, proxier::TrafficPolicy::Cluster);
  EXPECT_EQ(svc->sessionAffinity, proxier::SessionAffinity::None);
  EXPECT_EQ(svc->affinityTimeoutSeconds, proxier::kDefaultAffinityTimeoutSeconds);
  EXPECT_EQ(svc->healthCheckNodePort, 0);
}

TEST(SlicewatchDecodeService, EmptyAndNullEnumsTakeDefaults) {
  auto svc = as<proxier::Service>(one(service(
      R"("type":"","externalTrafficPolicy":"","internalTrafficPolicy":null,"sessionAffinity":"",)"
      R"("ports":[{"port":80,"protocol":null,"name":null}],"clusterIP":"10.96.0.1")")));
  EXPECT_EQ(svc->type, proxier::ServiceType::ClusterIP);
  EXPECT_EQ(svc->externalTrafficPolicy, proxier::TrafficPolicy::Cluster);
  EXPECT_EQ(svc->internalTrafficPolicy, proxier::TrafficPolicy::Cluster);
  EXPECT_EQ(svc->sessionAffinity, proxier::SessionAffinity::None);
  EXPECT_EQ(svc->ports[0].protocol, proxier::Protocol::TCP);
}

TEST(SlicewatchDecodeService, ClusterIPsWinOverClusterIP) {
  // clusterIPs comes first in the text here; the rule must not depend on field order.
  auto svc = as<proxier::Service>(
      one(service(R"("clusterIPs":["10.96.0.20","fd00::20"],"clusterIP":"10.96.0.99")")));
  EXPECT_EQ(svc->clusterIPs, (std::vector<IpAddr>{ip("10.96.0.20"), ip("fd00::20")}));
}

TEST(SlicewatchDecodeService, Headless) {
  auto a = as<proxier::Service>(one(service(R"("clusterIP":"None")")));
  EXPECT_TRUE(a->headless);
  EXPECT_TRUE(a->clusterIPs.empty());
  auto b = as<proxier::Service>(one(service(R"("clusterIP":"None","clusterIPs":["None"])")));
  EXPECT_TRUE(b->headless);
  EXPECT_TRUE(b->clusterIPs.empty());
  auto c = as<proxier::Service>(one(service(R"("clusterIP":"")")));
  EXPECT_FALSE(c->headless);
  EXPECT_TRUE(c->clusterIPs.empty());
}

TEST(SlicewatchDecodeService, ExternalName) {
  auto svc = as<proxier::Service>(
      one(service(R"("type":"ExternalName","externalName":"db.example.com")")));
  EXPECT_EQ(svc->type, proxier::ServiceType::ExternalName);
  EXPECT_EQ(svc->externalName, "db.example.com");
}

TEST(SlicewatchDecodeService, UnknownFieldsAreIgnored) {
  auto svc = as<proxier::Service>(one(R"({
    "kind": "Service", "apiVersion": "v1", "futureTopLevel": {"x": [1, 2, {"y": null}]},
    "metadata": {"name": "web", "annotations": {"a": "b"}, "uid": "123",
                 "managedFields": [{"manager": "kubectl"}], "creationTimestamp": null},
    "spec": {"ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "newField": true,
             "ports": [{"port": 80, "appProtocol": "http", "future": [1]}],
             "clusterIP": "10.96.0.1"},
    "status": {"conditions": [], "loadBalancer": {}}
  })"));
  EXPECT_EQ(svc->ports.size(), 1u);
  EXPECT_EQ(svc->clusterIPs.size(), 1u);
}

TEST(SlicewatchDecodeService, PortRejections) {
  expectRejected(service(R"("ports":[{"port":80},{"port":0}])"), "spec.ports[1].port",
                 reason::kPortOutOfRange);
  expectRejected(service(R"("ports":[{"port":80},{"port":65536}])"), "spec.ports[1].port",
                 reason::kPortOutOfRange);
  expectRejected(service(R"("ports":[{"port":99999999999999999999999}])"), "spec.ports[0].port",
                 reason::kPortOutOfRange);
  expectRejected(service(R"("ports":[{"port":"80"}])"), "spec.ports[0].port", reason::kWrongType);
  expectRejected(service(R"("ports":[{"port":80.5}])"), "spec.ports[0].port", reason::kWrongType);
  expectRejected(service(R"("ports":[{"name":"http"}])"), "spec.ports[0].port",
                 reason::kMissingField);
  expectRejected(service(R"("ports":[{"port":80,"nodePort":70000}])"), "spec.ports[0].nodePort",
                 reason::kPortOutOfRange);
  expectRejected(service(R"("ports":[{"port":80,"targetPort":0}])"), "spec.ports[0].targetPort",
                 reason::kPortOutOfRange);
  expectRejected(service(R"("ports":[{"port":80,"targetPort":true}])"), "spec.ports[0].targetPort",
                 reason::kWrongType);
  expectRejected(service(R"("healthCheckNodePort":-1)"), "spec.healthCheckNodePort",
                 reason::kPortOutOfRange);
  expectRejected(service(R"("ports":{"port":80})"), "spec.ports", reason::kWrongType);
  expectRejected(service(R"("ports":[80])"), "spec.ports[0]", reason::kWrongType);
  // nodePort 0 means "none allocated" and is fine.
  auto svc = as<proxier::Service>(one(service(R"("ports":[{"port":80,"nodePort":0}])")));
  EXPECT_EQ(svc->ports[0].nodePort, 0);
}

// A value the API server can hold (or a newer one could) never makes a Service unusable: as
// kube-proxy, an unknown enum value reads as the default, one bad element is left out, and the
// Service says which (ChangeTracker logs and counts it).
struct SkipCase {
  const char* spec;
  const char* extra;
  const char* field;
  std::string_view reason;
};

TEST(SlicewatchDecodeService, UnusableValuesAreSkippedNotTheService) {
  const SkipCase cases[] = {
      {R"("type":"Headless")", "", "spec.type", reason::kInvalidValue},
      {R"("externalTrafficPolicy":"Global")", "", "spec.externalTrafficPolicy",
       reason::kInvalidValue},
      {R"("internalTrafficPolicy":"local")", "", "spec.internalTrafficPolicy",
       reason::kInvalidValue},
      {R"("sessionAffinity":"Cookie")", "", "spec.sessionAffinity", reason::kInvalidValue},
      {"", R"(,"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.9","ipMode":"DSR"}]}})",
       "status.loadBalancer.ingress[0].ipMode", reason::kInvalidValue},
      {R"("externalIPs":["192.168.1.1","example.com"])", "", "spec.externalIPs[1]",
       reason::kInvalidIp},
      {R"("loadBalancerSourceRanges":["203.0.113.0/33","10.0.0.0/8"])", "",
       "spec.loadBalancerSourceRanges[0]", reason::kInvalidCidr},
      {R"("loadBalancerSourceRanges":["203.0.113.0","10.0.0.0/8"])", "",
       "spec.loadBalancerSourceRanges[0]", reason::kInvalidCidr},
      {"", R"(,"status":{"loadBalancer":{"ingress":[{"ip":"lb"},{"ip":"203.0.113.9"}]}})",
       "status.loadBalancer.ingress[0].ip", reason::kInvalidIp},
      {R"("ports":[{"port":80,"protocol":"QUIC"},{"port":81}])", "", "spec.ports[0].protocol",
       reason::kInvalidValue},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.spec) + c.extra);
    auto svc = as<proxier::Service>(one(service(c.spec, c.extra)));
    ASSERT_EQ(svc->skipped.size(), 1u);
    EXPECT_EQ(svc->skipped[0].field, c.field);
    EXPECT_EQ(svc->skipped[0].reason, c.reason);
  }
  // What is left is what kube-proxy would use.
  auto svc = as<proxier::Service>(one(service(R"("type":"Headless","sessionAffinity":"Cookie",
      "externalTrafficPolicy":"Global","externalIPs":["192.168.1.1","example.com"],
      "ports":[{"port":80,"protocol":"QUIC"},{"port":81}])")));
  EXPECT_EQ(svc->type, proxier::ServiceType::ClusterIP);
  EXPECT_EQ(svc->sessionAffinity, proxier::SessionAffinity::None);
  EXPECT_EQ(svc->externalTrafficPolicy, proxier::TrafficPolicy::Cluster);
  EXPECT_EQ(svc->externalIPs, std::vector<IpAddr>{ip("192.168.1.1")});
  ASSERT_EQ(svc->ports.size(), 1u);
  EXPECT_EQ(svc->ports[0].port, 81);
  auto lb = as<proxier::Service>(one(
      service("", R"(,"status":{"loadBalancer":{"ingress":[{"ip":"lb"},{"ip":"203.0.113.9"}]}})")));
  auto dsr = as<proxier::Service>(one(service(
      "", R"(,"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.9","ipMode":"DSR"}]}})")));
  EXPECT_EQ(dsr->loadBalancerIngress[0].ipMode, proxier::LoadBalancerIpMode::Proxy);
  ASSERT_EQ(lb->loadBalancerIngress.size(), 2u);
  EXPECT_FALSE(lb->loadBalancerIngress[0].ip);
  EXPECT_EQ(lb->loadBalancerIngress[1].ip, ip("203.0.113.9"));
}

// Forms the API server accepts (or old ones stored) that must read as kube-proxy reads them.
TEST(SlicewatchDecodeService, ApiValidFormsReadAsKubeProxyReadsThem) {
  auto svc = as<proxier::Service>(one(service(
      R"("loadBalancerSourceRanges":[" 203.0.113.0/25","203.0.113.128/25 ","203.0.113.0/25"],
         "externalIPs":["010.000.000.001","::ffff:192.168.1.5","10.0.0.1"],
         "clusterIP":"010.096.000.010")")));
  EXPECT_TRUE(svc->skipped.empty());
  ASSERT_EQ(svc->loadBalancerSourceRanges.size(), 2u);  // trimmed, the duplicate once
  EXPECT_EQ(svc->loadBalancerSourceRanges[0].str(), "203.0.113.0/25");
  EXPECT_EQ(svc->loadBalancerSourceRanges[1].str(), "203.0.113.128/25");
  // Zero-padded octets are decimal (ParseIPSloppy), IPv4-mapped is IPv4, duplicates once.
  EXPECT_EQ(svc->externalIPs, (std::vector<IpAddr>{ip("10.0.0.1"), ip("192.168.1.5")}));
  EXPECT_EQ(svc->clusterIPs, std::vector<IpAddr>{ip("10.96.0.10")});
}

TEST(SlicewatchDecodeService, EnumWrongTypeStillRejects) {
  expectRejected(service(R"("type":5)"), "spec.type", reason::kWrongType);
}

TEST(SlicewatchDecodeService, AffinityTimeoutRange) {
  expectRejected(service(R"("sessionAffinityConfig":{"clientIP":{"timeoutSeconds":0}})"),
                 "spec.sessionAffinityConfig.clientIP.timeoutSeconds", reason::kValueOutOfRange);
  expectRejected(service(R"("sessionAffinityConfig":{"clientIP":{"timeoutSeconds":86401}})"),
                 "spec.sessionAffinityConfig.clientIP.timeoutSeconds", reason::kValueOutOfRange);
  auto svc = as<proxier::Service>(one(service(R"("sessionAffinityConfig":{"clientIP":{}})")));
  EXPECT_EQ(svc->affinityTimeoutSeconds, proxier::kDefaultAffinityTimeoutSeconds);
}

TEST(SlicewatchDecodeService, MetadataRejections) {
  expectRejected(R"({"kind":"Service","metadata":{"namespace":"x"},"spec":{}})", "metadata.name",
                 reason::kMissingField);
  expectRejected(R"({"kind":"Service","spec":{}})", "metadata.name", reason::kMissingField);
  expectRejected(R"({"kind":"Service","metadata":{"name":""}})", "metadata.name",
                 reason::kMissingField);
  expectRejected(R"({"kind":"Service","metadata":{"name":7}})", "metadata.name",
                 reason::kWrongType);
  expectRejected(R"({"kind":"Service","metadata":{"name":"web","labels":{"app":1}}})",
                 "metadata.labels.app", reason::kWrongType);
  expectRejected(R"({"kind":"Service","metadata":{"name":"web"},"spec":[]})", "spec",
                 reason::kWrongType);
}

TEST(SlicewatchDecodeService, RejectionNamesObjectEvenWhenMetadataComesLast) {
  Rejection r = rejectionOf(one(R"({"kind":"Service","spec":{"ports":[{"port":-5}]},
      "metadata":{"namespace":"shop","name":"web"}})"));
  EXPECT_EQ(r.kind, "Service");
  EXPECT_EQ(r.object, "shop/web");
  EXPECT_EQ(r.field, "spec.ports[0].port");
  EXPECT_EQ(r.reason, reason::kPortOutOfRange);
  EXPECT_EQ(r.describe(),
            "test.json: Service shop/web field spec.ports[0].port: -5 is out of "
            "range 1..65535");
}

TEST(SlicewatchDecodeService, WrongTypeMessageShowsWhatWasThere) {
  Rejection r = rejectionOf(one(service(R"("ports":[{"port":"eighty"}])")));
  EXPECT_EQ(r.message, R"(expected an integer, got a string "eighty")");
}

// ---------------------------------------------------------------------------------------------
// EndpointSlice

TEST(SlicewatchDecodeSlice, AllFields) {
  auto s = as<proxier::EndpointSlice>(one(R"({
    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
    "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "7",
                 "labels": {"kubernetes.io/service-name": "web",
                            "endpointslice.kubernetes.io/managed-by": "x"}},
    "addressType": "IPv4",
    "endpoints": [
      {"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true,
       "terminating": false}, "nodeName": "node-a", "zone": "zone-a",
       "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "node-a"}]}},
      {"addresses": ["10.244.2.7", "10.244.2.8"], "conditions": {"ready": false,
       "serving": true, "terminating": true}, "nodeName": "node-b", "zone": "zone-b",
       "targetRef": {"kind": "Pod", "name": "web-2"}}
    ],
    "ports": [{"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
              {"name": "dns", "protocol": "UDP", "port": 53}]
  })"));
  EXPECT_EQ(s->key, (proxier::ObjectKey{"shop", "web-abc"}));
  EXPECT_EQ(s->resourceVersion, "7");
  EXPECT_EQ(s->serviceName, "web");
  EXPECT_EQ(s->serviceKey(), (proxier::ObjectKey{"shop", "web"}));
  EXPECT_EQ(s->addressType, proxier::AddressType::IPv4);
  ASSERT_EQ(s->endpoints.size(), 2u);
  const auto& a = s->endpoints[0];
  EXPECT_EQ(a.addresses, std::vector<IpAddr>{ip("10.244.1.5")});
  EXPECT_EQ(a.conditions.ready, true);
  EXPECT_EQ(a.conditions.serving, true);
  EXPECT_EQ(a.conditions.terminating, false);
  EXPECT_EQ(a.nodeName, "node-a");
  EXPECT_EQ(a.zone, "zone-a");
  EXPECT_EQ(a.zoneHints, std::vector<std::string>{"zone-a"});
  EXPECT_EQ(a.nodeHints, std::vector<std::string>{"node-a"});
  const auto& b = s->endpoints[1];
  EXPECT_EQ(b.addresses, (std::vector<IpAddr>{ip("10.244.2.7"), ip("10.244.2.8")}));
  EXPECT_EQ(b.conditions.ready, false);
  EXPECT_EQ(b.conditions.serving, true);
  EXPECT_EQ(b.conditions.terminating, true);
  ASSERT_EQ(s->ports.size(), 2u);
  EXPECT_EQ(s->ports[0], (proxier::EndpointPort{"http", proxier::Protocol::TCP, 8080}));
  EXPECT_EQ(s->ports[1], (proxier::EndpointPort{"dns", proxier::Protocol::UDP, 53}));
}

TEST(SlicewatchDecodeSlice, NilConditionsStayNil) {
  auto s = as<proxier::EndpointSlice>(one(sliceJson(
      R"("endpoints":[{"addresses":["10.244.1.5"]},
                      {"addresses":["10.244.1.6"],"conditions":{}},
                      {"addresses":["10.244.1.7"],"conditions":{"ready":null,"serving":false}}])")));
  ASSERT_EQ(s->endpoints.size(), 3u);
  for (const auto& ep : {s->endpoints[0], s->endpoints[1]}) {
    EXPECT_EQ(ep.conditions.ready, std::nullopt);
    EXPECT_EQ(ep.conditions.serving, std::nullopt);
    EXPECT_EQ(ep.conditions.terminating, std::nullopt);
    EXPECT_TRUE(ep.conditions.isReady());
    EXPECT_TRUE(ep.conditions.isServing());
    EXPECT_FALSE(ep.conditions.isTerminating());
  }
  EXPECT_EQ(s->endpoints[2].conditions.ready, std::nullopt);
  EXPECT_EQ(s->endpoints[2].conditions.serving, false);
}

TEST(SlicewatchDecodeSlice, PortsWithNilNumberAreSkippedAndNilNameIsEmpty) {
  auto s = as<proxier::EndpointSlice>(one(sliceJson(
      R"("endpoints":[],"ports":[{"name":"all","port":null},{"name":null,"port":80},{"name":"x"},)"
      R"({"port":443,"protocol":null}])")));
  ASSERT_EQ(s->ports.size(), 2u);
  EXPECT_EQ(s->ports[0], (proxier::EndpointPort{"", proxier::Protocol::TCP, 80}));
  EXPECT_EQ(s->ports[1], (proxier::EndpointPort{"", proxier::Protocol::TCP, 443}));
}

TEST(SlicewatchDecodeSlice, NoServiceNameLabel) {
  auto s = as<proxier::EndpointSlice>(one(
      R"({"kind":"EndpointSlice","metadata":{"name":"orphan"},"addressType":"IPv4","endpoints":null})"));
  EXPECT_EQ(s->serviceName, "");
  EXPECT_EQ(s->key.ns, "default");
  EXPECT_TRUE(s->endpoints.empty());
}

TEST(SlicewatchDecodeSlice, Ipv6) {
  auto s = as<proxier::EndpointSlice>(
      one(sliceJson(R"("endpoints":[{"addresses":["fd00:244:1::5"]}])", "IPv6")));
  EXPECT_EQ(s->addressType, proxier::AddressType::IPv6);
  EXPECT_EQ(s->endpoints[0].addresses, std::vector<IpAddr>{ip("fd00:244:1::5")});
}

TEST(SlicewatchDecodeSlice, FqdnDecodesWithoutAddresses) {
  auto s = as<proxier::EndpointSlice>(
      one(sliceJson(R"("endpoints":[{"addresses":["db.example.com"]}])", "FQDN")));
  EXPECT_EQ(s->addressType, proxier::AddressType::FQDN);
  ASSERT_EQ(s->endpoints.size(), 1u);
  EXPECT_TRUE(s->endpoints[0].addresses.empty());
}

TEST(SlicewatchDecodeSlice, AddressTypeAfterEndpoints) {
  auto v4 = as<proxier::EndpointSlice>(one(
      R"({"kind":"EndpointSlice","metadata":{"name":"s"},"endpoints":[{"addresses":["10.0.0.1"]}],)"
      R"("addressType":"IPv4"})"));
  EXPECT_EQ(v4->endpoints[0].addresses, std::vector<IpAddr>{ip("10.0.0.1")});
  auto fqdn = as<proxier::EndpointSlice>(
      one(R"({"kind":"EndpointSlice","metadata":{"name":"s"},"endpoints":[{"addresses":["a.b"]}],)"
          R"("addressType":"FQDN"})"));
  EXPECT_TRUE(fqdn->endpoints[0].addresses.empty());
  // A bad address is known bad only once addressType is read: the endpoint is left out then.
  auto late = as<proxier::EndpointSlice>(one(
      R"({"kind":"EndpointSlice","metadata":{"name":"s"},"endpoints":[{"addresses":["10.0.0.1"]},)"
      R"({"addresses":["a.b"]}],"addressType":"IPv4"})"));
  ASSERT_EQ(late->endpoints.size(), 1u);
  ASSERT_EQ(late->skipped.size(), 1u);
  EXPECT_EQ(late->skipped[0].field, "endpoints[1].addresses[0]");
  EXPECT_EQ(late->skipped[0].reason, reason::kInvalidIp);
}

// kube-proxy leaves out an endpoint it cannot use and serves the rest of the slice; so do we,
// naming the field and why.
TEST(SlicewatchDecodeSlice, UnusableEndpointsAreSkippedNotTheSlice) {
  struct Case {
    const char* endpoints;
    const char* type;
    std::vector<std::string> kept;  // first address of each endpoint kept
    const char* field;
    std::string_view reason;
    const char* message;
  };
  const Case cases[] = {
      {R"([{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.300"]},{"addresses":["10.0.0.3"]}])",
       "IPv4",
       {"10.0.0.1", "10.0.0.3"},
       "endpoints[1].addresses[0]",
       reason::kInvalidIp,
       R"(endpoint left out: "10.0.0.300" is not a valid IPv4 address)"},
      {R"([{"addresses":["10.0.0.1"]},{"addresses":["fd00::1"]}])",
       "IPv4",
       {"10.0.0.1"},
       "endpoints[1].addresses[0]",
       reason::kAddressFamilyMismatch,
       R"(endpoint left out: "fd00::1" is an IPv6 address but the slice's addressType is IPv4)"},
      {R"([{"addresses":["fd00::1","10.0.0.1"]},{"addresses":["fd00::2"]}])",
       "IPv6",
       {"fd00::2"},
       "endpoints[0].addresses[1]",
       reason::kAddressFamilyMismatch,
       nullptr},
      {R"([{"addresses":[]},{"addresses":["10.0.0.2"]}])",
       "IPv4",
       {"10.0.0.2"},
       "endpoints[0].addresses",
       reason::kMissingField,
       "endpoint left out: an endpoint needs at least one address"},
      {R"([{"nodeName":"n"},{"addresses":["10.0.0.2"]}])",
       "IPv4",
       {"10.0.0.2"},
       "endpoints[0].addresses",
       reason::kMissingField,
       nullptr},
      {R"([{"addresses":[" 10.0.0.1"]}])",
       "IPv4",
       {},
       "endpoints[0].addresses[0]",
       reason::kInvalidIp,
       nullptr},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.endpoints);
    auto s = as<proxier::EndpointSlice>(
        one(sliceJson(std::string(R"("endpoints":)") + c.endpoints, c.type)));
    std::vector<std::string> kept;
    for (const auto& ep : s->endpoints) kept.push_back(ep.addresses.at(0).str());
    EXPECT_EQ(kept, c.kept);
    ASSERT_EQ(s->skipped.size(), 1u);
    EXPECT_EQ(s->skipped[0].field, c.field);
    EXPECT_EQ(s->skipped[0].reason, c.reason);
    if (c.message) {
      EXPECT_EQ(s->skipped[0].message, c.message);
    }
  }
  auto clean =
      as<proxier::EndpointSlice>(one(sliceJson(R"("endpoints":[{"addresses":["10.0.0.1"]}])")));
  EXPECT_TRUE(clean->skipped.empty());
}

TEST(SlicewatchDecodeSlice, SizeLimits) {
  auto endpoints = [](size_t n) {
    std::string s = R"("endpoints":[)";
    for (size_t i = 0; i < n; ++i) {
      if (i) s += ',';
      s += R"({"addresses":["10.244.)" + std::to_string(i / 250) + "." +
           std::to_string(i % 250 + 1) + R"("]})";
    }
    return s + "]";
  };
  auto ok = as<proxier::EndpointSlice>(one(sliceJson(endpoints(proxier::kMaxEndpointsPerSlice))));
  EXPECT_EQ(ok->endpoints.size(), proxier::kMaxEndpointsPerSlice);
  expectRejected(sliceJson(endpoints(proxier::kMaxEndpointsPerSlice + 1)), "endpoints",
                 reason::kTooManyEndpoints);

  auto ports = [](size_t n) {
    std::string s = R"("ports":[)";
    for (size_t i = 0; i < n; ++i)
      s += std::string(i ? "," : "") + R"({"port":)" + std::to_string(i + 1) + "}";
    return s + "]";
  };
  auto okPorts = as<proxier::EndpointSlice>(one(sliceJson(ports(proxier::kMaxPortsPerSlice))));
  EXPECT_EQ(okPorts->ports.size(), proxier::kMaxPortsPerSlice);
  expectRejected(sliceJson(ports(proxier::kMaxPortsPerSlice + 1)), "ports", reason::kTooManyPorts);
}

TEST(SlicewatchDecodeSlice, Rejections) {
  expectRejected(R"({"kind":"EndpointSlice","metadata":{"name":"s"},"endpoints":[]})",
                 "addressType", reason::kMissingField);
  expectRejected(sliceJson(R"("endpoints":[])", "IPv5"), "addressType", reason::kInvalidValue);
  expectRejected(sliceJson(R"("endpoints":[{"addresses":[10]}])"), "endpoints[0].addresses[0]",
                 reason::kWrongType);
  expectRejected(
      sliceJson(R"("endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":"yes"}}])"),
      "endpoints[0].conditions.ready", reason::kWrongType);
  expectRejected(
      sliceJson(R"("endpoints":[{"addresses":["10.0.0.1"],"hints":{"forZones":[{"name":1}]}}])"),
      "endpoints[0].hints.forZones[0].name", reason::kWrongType);
  expectRejected(sliceJson(R"("endpoints":[],"ports":[{"port":0}])"), "ports[0].port",
                 reason::kPortOutOfRange);
  expectRejected(sliceJson(R"("endpoints":[],"ports":[{"port":80,"protocol":"TPC"}])"),
                 "ports[0].protocol", reason::kInvalidValue);
  expectRejected(sliceJson(R"("endpoints":{})"), "endpoints", reason::kWrongType);
}

// ---------------------------------------------------------------------------------------------
// Node

TEST(SlicewatchDecodeNode, AllFields) {
  auto n = as<proxier::Node>(one(R"({
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "node-a", "namespace": "ignored", "resourceVersion": "9",
                 "labels": {"topology.kubernetes.io/zone": "zone-a"},
                 "deletionTimestamp": "2024-01-01T00:00:00Z"},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:244:1::/64"],
             "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                        {"key": "k", "value": "v", "effect": "NoExecute"}]},
    "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"},
                             {"type": "Hostname", "address": "node-a"},
                             {"type": "ExternalIP", "address": "2001:db8::10"}]}
  })"));
  EXPECT_EQ(n->key, (proxier::ObjectKey{"", "node-a"}));
  EXPECT_EQ(n->resourceVersion, "9");
  EXPECT_EQ(n->zone(), "zone-a");
  EXPECT_TRUE(n->beingDeleted);
  ASSERT_EQ(n->podCIDRs.size(), 2u);
  EXPECT_EQ(n->podCIDRs[1].str(), "fd00:244:1::/64");
  ASSERT_EQ(n->taints.size(), 2u);
  EXPECT_EQ(n->taints[0], (proxier::Taint{"node.kubernetes.io/unschedulable", "", "NoSchedule"}));
  EXPECT_EQ(n->taints[1], (proxier::Taint{"k", "v", "NoExecute"}));
  ASSERT_EQ(n->addresses.size(), 3u);
  EXPECT_EQ(n->addresses[0].type, "InternalIP");
  EXPECT_EQ(n->addresses[0].ip, ip("10.0.0.10"));
  EXPECT_EQ(n->addresses[0].text, "10.0.0.10");
  EXPECT_EQ(n->addresses[1].ip, std::nullopt);
  EXPECT_EQ(n->addresses[1].text, "node-a");
  EXPECT_EQ(n->addresses[2].ip, ip("2001:db8::10"));
}

TEST(SlicewatchDecodeNode, PodCidrFallbackAndNoDeletion) {
  auto n = as<proxier::Node>(
      one(node(R"("spec":{"podCIDR":"10.244.2.0/24"},"metadata2":{"deletionTimestamp":"x"})")));
  ASSERT_EQ(n->podCIDRs.size(), 1u);
  EXPECT_EQ(n->podCIDRs[0].str(), "10.244.2.0/24");
  EXPECT_FALSE(n->beingDeleted);
  auto nullDeletion =
      as<proxier::Node>(one(R"({"kind":"Node","metadata":{"name":"n","deletionTimestamp":null}})"));
  EXPECT_FALSE(nullDeletion->beingDeleted);
}

// The API server does not check node addresses or pod CIDRs closely: one that does not parse
// is left out (named, with why), and the Node's labels and other values still count.
TEST(SlicewatchDecodeNode, UnusableValuesAreSkippedNotTheNode) {
  struct Case {
    const char* body;
    const char* field;
    std::string_view reason;
    size_t addresses;
    size_t podCIDRs;
  };
  const Case cases[] = {
      {R"("status":{"addresses":[{"type":"InternalIP","address":"10.0.0.256"},)"
       R"({"type":"InternalIP","address":"10.0.0.7"}]})",
       "status.addresses[0].address", reason::kInvalidIp, 1, 0},
      {R"("status":{"addresses":[{"type":"InternalIP"},{"type":"Hostname","address":"n"}]})",
       "status.addresses[0].address", reason::kMissingField, 1, 0},
      {R"("spec":{"podCIDRs":["10.244.1.0/24","10.244.2.0"]})", "spec.podCIDRs[1]",
       reason::kInvalidCidr, 0, 1},
      {R"("spec":{"podCIDR":"nonsense"})", "spec.podCIDR", reason::kInvalidCidr, 0, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body);
    auto n = as<proxier::Node>(one(node(c.body)));
    ASSERT_EQ(n->skipped.size(), 1u);
    EXPECT_EQ(n->skipped[0].field, c.field);
    EXPECT_EQ(n->skipped[0].reason, c.reason);
    EXPECT_EQ(n->addresses.size(), c.addresses);
    EXPECT_EQ(n->podCIDRs.size(), c.podCIDRs);
  }
  auto good = as<proxier::Node>(
      one(node(R"("status":{"addresses":[{"type":"InternalIP","address":"10.0.0.7"}]})")));
  ASSERT_EQ(good->addresses.size(), 1u);
  EXPECT_EQ(good->addresses[0].ip->str(), "10.0.0.7");
  EXPECT_TRUE(good->skipped.empty());
  expectRejected(node(R"("spec":{"taints":[{"key":1}]})"), "spec.taints[0].key",
                 reason::kWrongType);
}

// ---------------------------------------------------------------------------------------------
// Kinds, lists, documents

TEST(SlicewatchDecodeDocument, UnknownAndMissingKind) {
  Rejection pod = rejectionOf(one(R"({"kind":"Pod","metadata":{"name":"p","namespace":"x"}})"));
  EXPECT_EQ(pod.reason, reason::kUnknownKind);
  EXPECT_EQ(pod.field, "kind");
  EXPECT_EQ(pod.kind, "Pod");
  EXPECT_EQ(pod.object, "x/p");
  Rejection none = rejectionOf(one(R"({"metadata":{"name":"p"}})"));
  EXPECT_EQ(none.reason, reason::kMissingField);
  EXPECT_EQ(none.field, "kind");
  expectRejected(R"({"kind":3,"metadata":{"name":"p"}})", "kind", reason::kWrongType);
}

TEST(SlicewatchDecodeDocument, ListKeepsGoodItemsAroundABadOne) {
  auto results = decode(R"({"apiVersion":"v1","kind":"List","items":[
      {"kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":80}]}},
      {"kind":"Service","metadata":{"name":"b"},"spec":{"ports":[{"port":0}]}},
      {"kind":"Node","metadata":{"name":"node-a"}},
      {"kind":"ConfigMap","metadata":{"name":"c"}},
      {"kind":"EndpointSlice","metadata":{"name":"a-1"},"addressType":"IPv4","endpoints":[]}
  ]})");
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(as<proxier::Service>(results[0])->key.name, "a");
  Rejection b = rejectionOf(results[1]);
  EXPECT_EQ(b.object, "default/b");
  EXPECT_EQ(b.field, "spec.ports[0].port");
  EXPECT_EQ(as<proxier::Node>(results[2])->key.name, "node-a");
  EXPECT_EQ(rejectionOf(results[3]).reason, reason::kUnknownKind);
  EXPECT_EQ(as<proxier::EndpointSlice>(results[4])->key.name, "a-1");
}

TEST(SlicewatchDecodeDocument, TypedListItemsTakeTheListKind) {
  auto results =
      decode(R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"5"},
      "items":[{"metadata":{"name":"a"},"spec":{}},
               {"kind":"Service","metadata":{"name":"b"}},
               {"kind":"Node","metadata":{"name":"c"}}]})");
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(as<proxier::Service>(results[0])->key.name, "a");
  EXPECT_EQ(as<proxier::Service>(results[1])->key.name, "b");
  EXPECT_EQ(rejectionOf(results[2]).reason, reason::kUnknownKind);
}

TEST(SlicewatchDecodeDocument, UnnamedListItemsAreLocatedByIndex) {
  auto results = decode(R"({"kind":"List","items":[{"kind":"Node","metadata":{"name":"n"}},
      {"kind":"Service","spec":{}}, 7]})");
  ASSERT_EQ(results.size(), 3u);
  Rejection noName = rejectionOf(results[1]);
  EXPECT_EQ(noName.field, "items[1].metadata.name");
  EXPECT_EQ(noName.reason, reason::kMissingField);
  Rejection notObject = rejectionOf(results[2]);
  EXPECT_EQ(notObject.field, "items[2]");
  EXPECT_EQ(notObject.reason, reason::kWrongType);
}

TEST(SlicewatchDecodeDocument, EmptyListAndBlankText) {
  EXPECT_TRUE(decode(R"({"kind":"List","items":[]})").empty());
  EXPECT_TRUE(decode(R"({"kind":"List"})").empty());
  EXPECT_TRUE(decode("  \n\t ").empty());
  EXPECT_TRUE(decode("").empty());
}

TEST(SlicewatchDecodeDocument, MalformedJson) {
  Rejection r = rejectionOf(one("{\"kind\":\"Service\",\n\"metadata\":{\"name\":\"x\"\n"));
  EXPECT_EQ(r.reason, reason::kMalformedJson);
  EXPECT_EQ(r.origin, "test.json");
  EXPECT_EQ(rejectionOf(one(R"({"kind":"Service","metadata":{"name":"x"}} trailing)")).reason,
            reason::kMalformedJson);
  EXPECT_EQ(rejectionOf(one(R"({"kind":"Service","metadata":{"name":"x"}}})")).reason,
            reason::kMalformedJson);
  Rejection second = rejectionOf(one("{\"kind\":\"Node\",\"metadata\":{\"name\":\"a\"}}\n\n{}"));
  EXPECT_EQ(second.reason, reason::kMalformedJson);
  EXPECT_EQ(second.message,
            "malformed JSON at line 3: unexpected text after the end of the document");
  EXPECT_EQ(rejectionOf(one(R"({"kind":"Service","metadata":{"name":"x",}})")).reason,
            reason::kMalformedJson);
  EXPECT_EQ(rejectionOf(one("\"just a string\"")).reason, reason::kWrongType);
  EXPECT_EQ(rejectionOf(one("[1,2]")).reason, reason::kWrongType);
}

TEST(SlicewatchDecodeDocument, MalformedItemRejectsTheWholeDocumentOnce) {
  auto results = decode(R"({"kind":"List","items":[{"kind":"Node","metadata":{"name":"n1"}},
      {"kind":"Node","metadata":{"name":"n2"}}, {"kind":"Node","metadata":{"name": ]})");
  ASSERT_EQ(results.size(), 1u);
  Rejection r = rejectionOf(results[0]);
  EXPECT_EQ(r.reason, reason::kMalformedJson);
  EXPECT_NE(r.message.find("line 2"), std::string::npos) << r.message;
}

TEST(SlicewatchDecodeDocument, InvalidUtf8IsMalformed) {
  EXPECT_EQ(rejectionOf(one("{\"kind\":\"Node\",\"metadata\":{\"name\":\"\xff\"}}")).reason,
            reason::kMalformedJson);
}

TEST(SlicewatchDecodeDocument, EscapedStrings) {
  auto svc = as<proxier::Service>(one(
      R"({"kind":"Service","metadata":{"name":"w\u0065b","labels":{"k\"ey":"v\\al"}},"spec":{}})"));
  EXPECT_EQ(svc->key.name, "web");
  ASSERT_NE(svc->labels.get("k\"ey"), nullptr);
  EXPECT_EQ(*svc->labels.get("k\"ey"), "v\\al");
}

// The entry point for the API client: objects inside a watch event, with and without a kind.
TEST(SlicewatchDecodeDocument, DecodeObjectFromAStream) {
  simdjson::ondemand::parser parser;
  auto json = simdjson::padded_string(
      std::string_view(R"({"type":"ADDED","object":{"metadata":{"name":"web","namespace":"shop"},)"
                       R"("spec":{"clusterIP":"10.96.0.5"}}})"));
  simdjson::ondemand::document doc = parser.iterate(json);
  simdjson::ondemand::object ev = doc.get_object();
  EXPECT_EQ(std::string_view(ev["type"]), "ADDED");
  DecodeResult r = decodeObject(ev["object"].get_object(), "Service", DecodeOptions{"watch"});
  auto svc = as<proxier::Service>(r);
  EXPECT_EQ(svc->key, (proxier::ObjectKey{"shop", "web"}));
  EXPECT_EQ(svc->clusterIPs, std::vector<IpAddr>{ip("10.96.0.5")});

  auto json2 =
      simdjson::padded_string(std::string_view(R"({"kind":"Node","metadata":{"name":"n"}})"));
  simdjson::ondemand::document doc2 = parser.iterate(json2);
  Rejection mismatch =
      rejectionOf(decodeObject(doc2.get_object(), "Service", DecodeOptions{"watch"}));
  EXPECT_EQ(mismatch.reason, reason::kUnknownKind);
  EXPECT_EQ(mismatch.origin, "watch");

  simdjson::ondemand::document doc3 = parser.iterate(json2);
  auto node = as<proxier::Node>(decodeObject(doc3.get_object(), "", DecodeOptions{}));
  EXPECT_EQ(node->key.name, "n");
}

}  // namespace
}  // namespace sliceproxy::slicewatch
