#include "proxier/core/backend.h"

#include <algorithm>

namespace sliceproxy::proxier {

const char* featureName(Feature f) {
  switch (f) {
    case Feature::ClusterIP:
      return "ClusterIP";
    case Feature::NodePort:
      return "NodePort";
    case Feature::LoadBalancerVIP:
      return "LoadBalancerVIP";
    case Feature::ExternalIPs:
      return "ExternalIPs";
    case Feature::ExternalTrafficPolicyLocal:
      return "ExternalTrafficPolicyLocal";
    case Feature::InternalTrafficPolicyLocal:
      return "InternalTrafficPolicyLocal";
    case Feature::SessionAffinity:
      return "SessionAffinity";
    case Feature::LoadBalancerSourceRanges:
      return "LoadBalancerSourceRanges";
    case Feature::IPv6:
      return "IPv6";
    case Feature::SCTP:
      return "SCTP";
    case Feature::Hairpin:
      return "Hairpin";
  }
  return "?";
}

bool Capabilities::supports(Feature f) const {
  return std::find(supported.begin(), supported.end(), f) != supported.end();
}

}  // namespace sliceproxy::proxier
