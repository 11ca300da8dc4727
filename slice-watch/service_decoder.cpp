#include "slice-watch/service_decoder.h"

#include <fmt/format.h>

#include <algorithm>

#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch::detail {

namespace {

constexpr int64_t kMaxAffinityTimeoutSeconds = 86400;  // the API server's own limit

// An enum-valued string field: nullopt for null or "" (the API treats both as unset), and for a
// value this version does not know, which kube-proxy reads as the default: so do we, and say so.
template <class T, class Parse>
std::optional<T> enumField(Reader& r, od::value& v, Parse parse, const char* allowed,
                           const char* fallback, std::vector<proxier::SkippedValue>& skipped) {
  auto text = r.optString(v);
  if (!text || text->empty()) return std::nullopt;
  auto parsed = parse(*text);
  if (!parsed) {
    skipped.push_back({r.path.str(), std::string(reason::kInvalidValue),
                       fmt::format("unknown value {} (expected {}); read as {}, as kube-proxy does",
                                   inQuotes(*text), allowed, fallback)});
  }
  return parsed;
}

std::string_view trimmed(std::string_view s) {
  const char* space = " \t\r\n";
  const size_t first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

template <class T>
void addOnce(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

}  // namespace

void ServiceDecoder::field(Field& f) {
  if (f.is("spec")) {
    spec(f.value);
  } else if (f.is("status")) {
    r_.forEachField(f.value, [&](Field& s) {
      if (!s.is("loadBalancer")) return;
      r_.forEachField(s.value, [&](Field& lb) {
        if (!lb.is("ingress")) return;
        r_.forEachElement(lb.value, [&](size_t, od::value& e) {
          ingress(e, svc_->loadBalancerIngress.emplace_back());
        });
      });
    });
  }
}

proxier::TrafficPolicy ServiceDecoder::trafficPolicy(od::value& v) {
  return enumField<proxier::TrafficPolicy>(r_, v, proxier::parseTrafficPolicy, "Cluster or Local",
                                           "Cluster", svc_->skipped)
      .value_or(proxier::TrafficPolicy::Cluster);
}

void ServiceDecoder::spec(od::value& v) {
  proxier::Service& s = *svc_;
  r_.forEachField(v, [&](Field& f) {
    if (f.is("type")) {
      s.type = enumField<proxier::ServiceType>(r_, f.value, proxier::parseServiceType,
                                               "ClusterIP, NodePort, LoadBalancer or ExternalName",
                                               "ClusterIP", s.skipped)
                   .value_or(proxier::ServiceType::ClusterIP);
    } else if (f.is("clusterIP")) {
      auto text = r_.optString(f.value);
      if (text == "None") {
        clusterIPNone_ = true;
      } else if (text && !text->empty()) {
        clusterIP_ = r_.ipFrom(*text);
      }
    } else if (f.is("clusterIPs")) {
      clusterIPs(f.value);
    } else if (f.is("ports")) {
      r_.forEachElement(f.value, [&](size_t, od::value& e) {
        if (!port(e, s.ports.emplace_back())) s.ports.pop_back();
      });
    } else if (f.is("externalIPs")) {
      // kube-proxy skips an address it cannot parse and serves the others.
      r_.forEachElement(f.value, [&](size_t, od::value& e) {
        std::string_view text = r_.string(e);
        if (auto ip = proxier::IpAddr::parse(text)) {
          addOnce(s.externalIPs, *ip);
        } else {
          s.skipped.push_back({r_.path.str(), std::string(reason::kInvalidIp),
                               fmt::format("{} is not an IP address; this externalIP is ignored, "
                                           "the rest of the Service is served",
                                           inQuotes(text))});
        }
      });
    } else if (f.is("loadBalancerSourceRanges")) {
      // The API server validates each range after trimming spaces, and kube-proxy trims too.
      r_.forEachElement(f.value, [&](size_t, od::value& e) {
        std::string_view text = r_.string(e);
        if (auto c = proxier::Cidr::parse(trimmed(text))) {
          addOnce(s.loadBalancerSourceRanges, *c);
        } else {
          s.skipped.push_back({r_.path.str(), std::string(reason::kInvalidCidr),
                               fmt::format("{} is not a CIDR; this source range is ignored, the "
                                           "others apply",
                                           inQuotes(text))});
        }
      });
    } else if (f.is("externalTrafficPolicy")) {
      s.externalTrafficPolicy = trafficPolicy(f.value);
    } else if (f.is("internalTrafficPolicy")) {
      s.internalTrafficPolicy = trafficPolicy(f.value);
    } else if (f.is("sessionAffinity")) {
      s.sessionAffinity =
          enumField<proxier::SessionAffinity>(r_, f.value, proxier::parseSessionAffinity,
                                              "None or ClientIP", "None", s.skipped)
              .value_or(proxier::SessionAffinity::None);
    } else if (f.is("sessionAffinityConfig")) {
      r_.forEachField(f.value, [&](Field& c) {
        if (!c.is("clientIP")) return;
        r_.forEachField(c.value, [&](Field& t) {
          if (!t.is("timeoutSeconds") || r_.isNull(t.value)) return;
          s.affinityTimeoutSeconds = static_cast<uint32_t>(
              r_.integer(t.value, 1, kMaxAffinityTimeoutSeconds, reason::kValueOutOfRange));
        });
      });
    } else if (f.is("healthCheckNodePort")) {
      if (!r_.isNull(f.value)) s.healthCheckNodePort = r_.port(f.value, 0);
    } else if (f.is("trafficDistribution")) {
      s.trafficDistribution = r_.optString(f.value).value_or("");
    } else if (f.is("externalName")) {
      s.externalName = r_.optString(f.value).value_or("");
    }
  });
}

void ServiceDecoder::clusterIPs(od::value& v) {
  proxier::Service& s = *svc_;
  Reader::Limit limit{2, reason::kTooManyAddresses, "addresses (one per IP family)"};
  r_.forEachElement(v, limit, [&](size_t i, od::value& e) {
    haveClusterIPs_ = true;
    std::string_view text = r_.string(e);
    if (i == 0 && text == "None") {
      s.headless = true;
      return;
    }
    proxier::IpAddr ip = r_.ipFrom(text);
    // A dual-stack service has one address per family, never two of one.
    if (i == 1 && !s.clusterIPs.empty() && s.clusterIPs[0].family == ip.family) {
      r_.fail(reason::kDuplicateIpFamily,
              fmt::format("{} is a second {} address; clusterIPs holds at most one per family",
                          inQuotes(text), proxier::familyName(ip.family)));
    }
    s.clusterIPs.push_back(ip);
  });
}

bool ServiceDecoder::port(od::value& v, proxier::ServicePortSpec& p) {
  bool havePort = false;
  bool haveTarget = false;
  bool known = true;
  r_.forEachField(v, [&](Field& f) {
    if (f.is("name")) {
      p.name = r_.optString(f.value).value_or("");
    } else if (f.is("protocol")) {
      auto text = r_.optString(f.value);
      if (!text || text->empty()) return;
      auto proto = proxier::parseProtocol(*text);
      if (proto) {
        p.protocol = *proto;
        return;
      }
      // A protocol this version cannot program: that port alone is left out.
      known = false;
      svc_->skipped.push_back({r_.path.str(), std::string(reason::kInvalidValue),
                               fmt::format("unknown protocol {} (expected TCP, UDP or SCTP); this "
                                           "port is ignored, the others are served",
                                           inQuotes(*text))});
    } else if (f.is("port")) {
      p.port = r_.port(f.value, 1);
      havePort = true;
    } else if (f.is("nodePort")) {
      if (!r_.isNull(f.value)) p.nodePort = r_.port(f.value, 0);
    } else if (f.is("targetPort")) {
      od::json_type t = f.value.type();
      if (t == od::json_type::null) return;
      haveTarget = true;
      if (t == od::json_type::number) {
        p.targetPort.number = static_cast<int32_t>(r_.port(f.value, 1));
      } else if (t == od::json_type::string) {
        p.targetPort.name = std::string(r_.string(f.value));
      } else {
        r_.wrongType(f.value, "an integer or a string");
      }
    }
  });
  if (!havePort) {
    r_.path.push("port");
    r_.fail(reason::kMissingField, "a service port needs a port number");
  }
  // The API server defaults targetPort to port; hand-written manifests never went through it.
  if (!haveTarget) p.targetPort.number = p.port;
  return known;
}

void ServiceDecoder::ingress(od::value& v, proxier::LoadBalancerIngress& in) {
  r_.forEachField(v, [&](Field& f) {
    if (f.is("ip")) {
      auto text = r_.optString(f.value);
      if (!text || text->empty()) return;
      if (auto ip = proxier::IpAddr::parse(*text)) {
        in.ip = *ip;
      } else {
        svc_->skipped.push_back({r_.path.str(), std::string(reason::kInvalidIp),
                                 fmt::format("{} is not an IP address; this load-balancer address "
                                             "is ignored",
                                             inQuotes(*text))});
      }
    } else if (f.is("hostname")) {
      in.hostname = r_.optString(f.value).value_or("");
    } else if (f.is("ipMode")) {
      // Unset is VIP; a mode this version does not know is not VIP (kube-proxy's IsVIPMode), so
      // the address is left to the load balancer, as with Proxy.
      const size_t notes = svc_->skipped.size();
      auto mode = enumField<proxier::LoadBalancerIpMode>(r_, f.value, proxier::parseIpMode,
                                                         "VIP or Proxy", "Proxy", svc_->skipped);
      const bool unknown = svc_->skipped.size() > notes;
      in.ipMode = mode.value_or(unknown ? proxier::LoadBalancerIpMode::Proxy
                                        : proxier::LoadBalancerIpMode::VIP);
    }
  });
}

proxier::ServicePtr ServiceDecoder::finish(ObjectMeta&& meta) {
  proxier::Service& s = *svc_;
  s.key = {std::move(meta.ns), std::move(meta.name)};
  s.resourceVersion = std::move(meta.resourceVersion);
  s.created = meta.creationTimestamp.value_or(std::chrono::system_clock::time_point{});
  s.labels = std::move(meta.labels);
  if (!haveClusterIPs_) {
    s.headless = clusterIPNone_;
    if (clusterIP_) s.clusterIPs.push_back(*clusterIP_);
  }
  return std::move(svc_);
}

}  // namespace sliceproxy::slicewatch::detail
