#pragma once
// Which objects this proxy ignores, exactly as kube-proxy decides it.

#include <optional>
#include <string>

#include "proxier/model/endpoint_slice.h"
#include "proxier/model/service.h"

namespace sliceproxy::proxier {

struct FilterConfig {
  // --service-proxy-name: empty means "the default proxy", which handles only objects without
  // the service.kubernetes.io/service-proxy-name label; a name means only objects labelled with it.
  std::string serviceProxyName;
};

// Why a Service is ignored, or nullopt if it is handled.
std::optional<std::string> serviceSkipReason(const Service& svc, const FilterConfig& cfg);
// Why an EndpointSlice is ignored, or nullopt if it is handled.
std::optional<std::string> sliceSkipReason(const EndpointSlice& slice, const FilterConfig& cfg);

}  // namespace sliceproxy::proxier
