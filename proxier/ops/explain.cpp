#include "proxier/ops/explain.h"

#include <fmt/format.h>

#include <charconv>

#include "proxier/ops/view_json.h"

namespace sliceproxy::proxier {

namespace json = boost::json;

std::optional<ExplainQuery> parseExplainTarget(const std::string& target, const std::string& from,
                                               std::string& error) {
  ExplainQuery q;
  std::string t = target, proto = "tcp";
  if (auto slash = t.rfind('/'); slash != std::string::npos) {
    proto = t.substr(slash + 1);
    t = t.substr(0, slash);
  }
  for (auto& c : proto) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (proto == "tcp")
    q.protocol = Protocol::TCP;
  else if (proto == "udp")
    q.protocol = Protocol::UDP;
  else if (proto == "sctp")
    q.protocol = Protocol::SCTP;
  else {
    error = fmt::format("\"{}\": protocol must be tcp, udp or sctp", target);
    return std::nullopt;
  }
  auto colon = t.rfind(':');
  if (colon == std::string::npos) {
    error = fmt::format("\"{}\" is not ADDRESS:PORT[/tcp|udp]", target);
    return std::nullopt;
  }
  std::string host = t.substr(0, colon), port = t.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto ip = IpAddr::parse(host);
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (!ip || ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535) {
    error = fmt::format("\"{}\" is not ADDRESS:PORT[/tcp|udp]", target);
    return std::nullopt;
  }
  q.address = *ip;
  q.port = static_cast<uint16_t>(p);
  if (!from.empty()) {
    q.from = IpAddr::parse(from);
    if (!q.from) {
      error = fmt::format("--from: \"{}\" is not an IP address", from);
      return std::nullopt;
    }
  }
  return q;
}

namespace {

bool nodeOwns(const NodeContext& node, const IpAddr& a) {
  if (!node.node) return false;
  for (const auto& addr : node.node->addresses) {
    if (addr.ip && *addr.ip == a) return true;
  }
  return false;
}

// Why an endpoint is not in the set the packet uses.
std::string whyNot(const ServicePortView& v, const MergedEndpoint& e, uint8_t set) {
  if (set == epset::kLocal && !e.isLocal()) return "not local: runs on another node";
  if (!e.ready()) {
    if (e.serving() && e.terminating()) {
      return "terminating: used only when no ready endpoint is left";
    }
    return "not ready";
  }
  if (set == epset::kCluster) {
    switch (v.modes().cluster) {
      case ClusterMode::PreferSameZone:
        return "other zone: topology hints send this zone's traffic elsewhere";
      case ClusterMode::PreferSameNode:
        return "other node: topology hints name another node";
      default:
        break;
    }
  }
  return "not selected";
}

}  // namespace

json::object explain(const ExplainQuery& q, const NodeState& state, const Backend& backend,
                     const NetworkConfig& net) {
  json::object out;
  out["address"] = q.address.str();
  out["port"] = q.port;
  out["protocol"] = protocolName(q.protocol);
  if (q.from) out["from"] = q.from->str();
  out["backend"] = backend.name();
  const NodeContext& node = state.node();
  const bool toNode = nodeOwns(node, q.address);

  const ServicePortView* match = nullptr;
  std::string frontend;
  bool addressKnown = false;
  for (const ServicePortView* v : state.state().ports) {
    const auto& info = *v->info();
    if (info.key.port.protocol != q.protocol) {
      if (info.clusterIP == q.address) addressKnown = true;
      continue;
    }
    auto has = [&](const std::vector<IpAddr>& ips) {
      return std::find(ips.begin(), ips.end(), q.address) != ips.end();
    };
    if (info.clusterIP == q.address) {
      addressKnown = true;
      if (info.port == q.port) frontend = "ClusterIP";
    } else if (has(info.externalIPs)) {
      addressKnown = true;
      if (info.port == q.port) frontend = "ExternalIP";
    } else if (has(info.loadBalancerIPs)) {
      addressKnown = true;
      if (info.port == q.port) frontend = "LoadBalancer";
    }
    if (frontend.empty() && info.nodePort == q.port && info.nodePort != 0 &&
        q.address.family == info.clusterIP.family && toNode) {
      frontend = "NodePort";
    }
    if (!frontend.empty()) {
      match = v;
      break;
    }
  }
  if (!match) {
    out["servicePort"] = nullptr;
    if (addressKnown) {
      out["verdict"] = "reject";
      out["reason"] =
          "the address belongs to a service, but no service port matches this port and protocol";
    } else {
      out["verdict"] = "not a service";
      out["reason"] = toNode ? "a local address of this node without a NodePort on this port: "
                               "delivered to the node as usual"
                             : "no service uses this address: routed as usual, sliceproxy does "
                               "not touch it";
    }
    return out;
  }

  const auto& info = *match->info();
  const bool external = frontend != "ClusterIP";
  out["servicePort"] = info.key.str();
  // Other Services claiming this frontend lost it to this one (frontend_conflicts.h).
  Frontend claimed = frontend == "NodePort" ? Frontend{IpAddr{}, info.nodePort, q.protocol, true}
                                            : Frontend{q.address, q.port, q.protocol, false};
  if (auto losers = state.conflicts().losersOf(claimed); !losers.empty()) {
    json::array names;
    for (const auto& k : losers) names.emplace_back(k.str());
    out["conflictingServices"] = std::move(names);
  }
  out["frontend"] = frontend;
  out["service"] = infoToJson(info);
  out["clusterMode"] = clusterModeName(match->modes().cluster);
  out["localMode"] = localModeName(match->modes().local);

  const bool fromLocalPod = q.from && net.detectLocal == LocalDetectMode::ClusterCIDR &&
                            net.clusterCIDR(q.from->family) &&
                            net.clusterCIDR(q.from->family)->contains(*q.from);
  const bool fromNode = q.from && nodeOwns(node, *q.from);
  uint8_t set = external ? match->externalSet() : match->internalSet();
  std::string policy;
  if (external && info.externalPolicyLocal && (fromLocalPod || fromNode)) {
    set = epset::kCluster;
    policy =
        "externalTrafficPolicy=Local, but traffic from a pod or the node itself is "
        "short-circuited to the cluster-wide endpoints";
  } else if (external) {
    policy =
        std::string("externalTrafficPolicy=") + (info.externalPolicyLocal ? "Local" : "Cluster");
  } else {
    policy =
        std::string("internalTrafficPolicy=") + (info.internalPolicyLocal ? "Local" : "Cluster");
  }
  out["trafficPolicy"] = policy;
  out["endpointSet"] = set == epset::kLocal ? "local" : "cluster";

  json::array eligible, others;
  for (const MergedEndpoint* e : match->sortedEndpoints()) {
    json::object o{{"endpoint", endpointString(e->key)}};
    const auto& src = e->source();
    if (!src.nodeName.empty()) o["nodeName"] = src.nodeName;
    if (!src.zone.empty()) o["zone"] = src.zone;
    if (e->sets & set) {
      eligible.emplace_back(std::move(o));
    } else {
      o["reason"] = whyNot(*match, *e, set);
      others.emplace_back(std::move(o));
    }
  }
  const bool none = eligible.empty();
  out["eligibleEndpoints"] = std::move(eligible);
  out["ineligibleEndpoints"] = std::move(others);
  if (!none) {
    out["verdict"] = "dnat";
    out["reason"] = "DNAT to one of the eligible endpoints";
  } else if (!match->hasAnyEndpoints()) {
    out["verdict"] = "reject";
    out["reason"] =
        "the service has no usable endpoints: rejected (ICMP port unreachable / TCP reset)";
  } else if (external) {
    out["verdict"] = "drop";
    out["reason"] =
        "externalTrafficPolicy=Local and this node has no local endpoint: dropped "
        "(the load balancer's health check steers traffic to other nodes)";
  } else {
    out["verdict"] = "drop";
    out["reason"] = "internalTrafficPolicy=Local and this node has no local endpoint: dropped";
  }
  if (info.sessionAffinity == SessionAffinity::ClientIP) {
    out["sessionAffinity"] = fmt::format("ClientIP, {}s", info.affinityTimeoutSeconds);
  }
  // Masquerade, as the backends apply it.
  std::string masq;
  if (net.masqueradeAll) {
    masq = "yes: --masquerade-all";
  } else if (external && !info.externalPolicyLocal) {
    masq = "yes: external traffic with externalTrafficPolicy=Cluster (so replies come back here)";
  } else if (external) {
    masq = set == epset::kCluster ? "no: short-circuited local traffic keeps its source"
                                  : "no: externalTrafficPolicy=Local keeps the client address";
  } else if (net.detectLocal == LocalDetectMode::None) {
    masq = "no: traffic to a ClusterIP is not masqueraded without local-traffic detection";
  } else if (!q.from) {
    masq = fmt::format("if the source is not local ({}): yes; from pods: no",
                       localDetectModeName(net.detectLocal));
  } else if (fromLocalPod) {
    masq = "no: the source is a pod (cluster CIDR)";
  } else {
    masq = fmt::format("yes: the source is not local ({})", localDetectModeName(net.detectLocal));
  }
  out["masquerade"] = masq;
  json::array objs;
  for (auto& name : backend.kernelObjects(info.key)) objs.emplace_back(name);
  out["kernelObjects"] = std::move(objs);
  return out;
}

std::string explainText(const json::object& e) {
  auto s = [&](const char* k) -> std::string {
    auto* v = e.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  std::string out = fmt::format("{}:{}/{}", s("address"), e.at("port").as_int64(), s("protocol"));
  if (e.contains("from")) out += " from " + s("from");
  out += "\n";
  if (e.at("servicePort").is_null()) {
    return out + fmt::format("  verdict: {}\n  why:     {}\n", s("verdict"), s("reason"));
  }
  out += fmt::format("  service port: {} ({})\n", s("servicePort"), s("frontend"));
  if (auto* c = e.if_contains("conflictingServices")) {
    std::vector<std::string> names;
    for (const auto& x : c->as_array()) names.emplace_back(x.as_string());
    out += fmt::format(
        "  conflict:     also claimed by {}, not programmed for them (the older "
        "Service keeps a frontend)\n",
        fmt::join(names, ", "));
  }
  out += fmt::format("  policy:       {}; {} endpoints (cluster mode {}, local mode {})\n",
                     s("trafficPolicy"), s("endpointSet"), s("clusterMode"), s("localMode"));
  out += fmt::format("  verdict:      {}: {}\n", s("verdict"), s("reason"));
  out += fmt::format("  masquerade:   {}\n", s("masquerade"));
  if (e.contains("sessionAffinity"))
    out += fmt::format("  affinity:     {}\n", s("sessionAffinity"));
  out += "  eligible endpoints:\n";
  for (const auto& x : e.at("eligibleEndpoints").as_array()) {
    out += fmt::format("    {}\n", std::string(x.at("endpoint").as_string()));
  }
  if (e.at("eligibleEndpoints").as_array().empty()) out += "    (none)\n";
  if (!e.at("ineligibleEndpoints").as_array().empty()) {
    out += "  not eligible:\n";
    for (const auto& x : e.at("ineligibleEndpoints").as_array()) {
      out += fmt::format("    {}: {}\n", std::string(x.at("endpoint").as_string()),
                         std::string(x.at("reason").as_string()));
    }
  }
  out += fmt::format("  kernel objects ({}):\n", s("backend"));
  for (const auto& x : e.at("kernelObjects").as_array()) {
    out += fmt::format("    {}\n", std::string(x.as_string()));
  }
  if (e.at("kernelObjects").as_array().empty()) out += "    (the backend does not name them)\n";
  return out;
}

}  // namespace sliceproxy::proxier
