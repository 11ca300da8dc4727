#include "proxier/ops/view_json.h"

#include <fmt/format.h>

namespace sliceproxy::proxier {

namespace json = boost::json;

std::string endpointString(const EndpointKey& k) {
  return k.ip.isV4() ? fmt::format("{}:{}", k.ip.str(), k.port)
                     : fmt::format("[{}]:{}", k.ip.str(), k.port);
}

json::array setNames(uint8_t sets) {
  json::array a;
  if (sets & epset::kCluster) a.emplace_back("cluster");
  if (sets & epset::kLocal) a.emplace_back("local");
  return a;
}

namespace {

template <typename T, typename F>
json::array mapArray(const std::vector<T>& v, F f) {
  json::array a;
  for (const auto& x : v) a.emplace_back(f(x));
  return a;
}

}  // namespace

json::object infoToJson(const ServicePortInfo& info) {
  json::object o;
  o["servicePort"] = info.key.str();
  o["type"] = serviceTypeName(info.type);
  o["clusterIP"] = info.clusterIP.str();
  o["port"] = info.port;
  o["protocol"] = protocolName(info.key.port.protocol);
  if (info.nodePort) o["nodePort"] = info.nodePort;
  if (!info.externalIPs.empty()) {
    o["externalIPs"] = mapArray(info.externalIPs, [](const IpAddr& a) { return a.str(); });
  }
  if (!info.loadBalancerIPs.empty()) {
    o["loadBalancerIPs"] = mapArray(info.loadBalancerIPs, [](const IpAddr& a) { return a.str(); });
  }
  if (!info.loadBalancerSourceRanges.empty()) {
    o["loadBalancerSourceRanges"] =
        mapArray(info.loadBalancerSourceRanges, [](const Cidr& c) { return c.str(); });
  }
  o["internalTrafficPolicy"] = info.internalPolicyLocal ? "Local" : "Cluster";
  o["externalTrafficPolicy"] = info.externalPolicyLocal ? "Local" : "Cluster";
  if (info.sessionAffinity == SessionAffinity::ClientIP) {
    o["sessionAffinityTimeoutSeconds"] = info.affinityTimeoutSeconds;
  }
  if (info.healthCheckNodePort) o["healthCheckNodePort"] = info.healthCheckNodePort;
  return o;
}

json::object viewToJson(const ServicePortView& view) {
  json::object o =
      view.info() ? infoToJson(*view.info()) : json::object{{"servicePort", view.key().str()}};
  o["clusterMode"] = clusterModeName(view.modes().cluster);
  o["localMode"] = localModeName(view.modes().local);
  o["hasEndpoints"] = view.hasAnyEndpoints();
  json::array internal, external, cluster;
  const uint8_t in = view.internalSet(), ex = view.externalSet();
  for (const MergedEndpoint* e : view.sortedEndpoints()) {
    auto s = endpointString(e->key);
    if (e->sets & in) internal.emplace_back(s);
    if (view.info() && view.info()->externallyAccessible() && (e->sets & ex))
      external.emplace_back(s);
    if (e->sets & epset::kCluster) cluster.emplace_back(s);
  }
  o["internalEndpoints"] = std::move(internal);
  if (view.info() && view.info()->externallyAccessible()) {
    o["externalEndpoints"] = std::move(external);
    // With eTP=Local, pods and the node itself still reach the whole cluster-wide set.
    if (view.info()->externalPolicyLocal) o["shortCircuitEndpoints"] = std::move(cluster);
  }
  return o;
}

json::object upsertToJson(const ServicePortUpsert& u) {
  json::object o;
  o["op"] = u.created ? "create" : "update";
  o["servicePort"] = u.view->key().str();
  if (u.infoChanged || u.modesChanged || u.anyEndpointsChanged) o["state"] = viewToJson(*u.view);
  json::array changes;
  for (const auto& c : u.endpoints) {
    changes.emplace_back(json::object{{"endpoint", endpointString(c.key)},
                                      {"from", setNames(c.oldSets)},
                                      {"to", setNames(c.newSets)}});
  }
  o["endpointChanges"] = std::move(changes);
  return o;
}

json::object deleteToJson(const ServicePortDelete& d) {
  return json::object{{"op", "delete"}, {"servicePort", d.key.str()}};
}

json::object nodeToJson(const NodeContext& node) {
  json::object o;
  o["name"] = node.identity.nodeName;
  o["zone"] = node.identity.zone;
  json::array addrs;
  if (node.node) {
    for (const auto& a : node.node->addresses) {
      if (a.ip) addrs.emplace_back(a.ip->str());
    }
  }
  o["addresses"] = std::move(addrs);
  return o;
}

namespace {

json::object kernelSupportJson(const BackendInfo& backend) {
  std::string missing = backend.kernelSupport();
  json::object o{{"available", missing.empty()}};
  if (!missing.empty()) o["missing"] = missing;
  return o;
}

// [{"name": "CAP_NET_ADMIN", "for": "..."}]: what the daemon checks at start-up.
json::array linuxCapabilitiesJson(const BackendInfo& backend) {
  json::array out;
  for (const auto& c : backend.linuxCapabilities) {
    out.push_back(json::object{{"name", c.name}, {"for", c.why}});
  }
  return out;
}

}  // namespace

std::string capabilitiesJson(const BackendInfo& backend) {
  auto caps = backend.capabilities();
  json::array supported, unsupported;
  for (int f = 0; f <= static_cast<int>(Feature::Hairpin); ++f) {
    auto feature = static_cast<Feature>(f);
    (caps.supports(feature) ? supported : unsupported).emplace_back(featureName(feature));
  }
  return json::serialize(json::object{{"backend", backend.name},
                                      {"supported", std::move(supported)},
                                      {"unsupported", std::move(unsupported)},
                                      {"kernel", kernelSupportJson(backend)},
                                      {"linuxCapabilities", linuxCapabilitiesJson(backend)}});
}

std::string backendsJson(BackendRegistry registry) {
  json::array out;
  for (const auto& b : registry) {
    out.push_back(json::object{{"name", b.name},
                               {"mode", b.mode},
                               {"summary", b.summary},
                               {"programsKernel", b.programsKernel},
                               {"staleFlowCleaner", staleFlowCleanerName(b.cleaner)},
                               {"kernel", kernelSupportJson(b)},
                               {"linuxCapabilities", linuxCapabilitiesJson(b)}});
  }
  return json::serialize(out);
}

}  // namespace sliceproxy::proxier
