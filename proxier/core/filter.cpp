#include "proxier/core/filter.h"

namespace sliceproxy::proxier {

namespace {

// kube-proxy's informers select `!service.kubernetes.io/headless,!service.kubernetes.io/
// service-proxy-name` (or `service-proxy-name=NAME`), for Services and EndpointSlices alike.
std::optional<std::string> labelSkipReason(const Labels& labels, const FilterConfig& cfg) {
  if (labels.has(kLabelHeadless)) return "labelled service.kubernetes.io/headless";
  const std::string* proxyName = labels.get(kLabelServiceProxyName);
  if (cfg.serviceProxyName.empty()) {
    if (proxyName) return "labelled service.kubernetes.io/service-proxy-name=" + *proxyName;
  } else if (!proxyName || *proxyName != cfg.serviceProxyName) {
    return "not labelled service.kubernetes.io/service-proxy-name=" + cfg.serviceProxyName;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> serviceSkipReason(const Service& svc, const FilterConfig& cfg) {
  if (auto r = labelSkipReason(svc.labels, cfg)) return r;
  if (svc.type == ServiceType::ExternalName) return "type ExternalName";
  if (svc.headless) return "headless (clusterIP None)";
  if (svc.clusterIPs.empty()) return "no clusterIP";
  return std::nullopt;
}

std::optional<std::string> sliceSkipReason(const EndpointSlice& slice, const FilterConfig& cfg) {
  if (auto r = labelSkipReason(slice.labels, cfg)) return r;
  if (slice.addressType == AddressType::FQDN) return "addressType FQDN";
  if (slice.serviceName.empty()) return "no kubernetes.io/service-name label";
  return std::nullopt;
}

}  // namespace sliceproxy::proxier
