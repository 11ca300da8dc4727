#include "conntrack/selector.h"

#include <fmt/format.h>

namespace sliceproxy::conntrack {

const char* reasonName(StaleReason r) {
  switch (r) {
    case StaleReason::EndpointGone:
      return "endpoint gone";
    case StaleReason::Untranslated:
      return "service got endpoints";
    case StaleReason::FrontendRemoved:
      return "frontend removed";
  }
  return "?";
}

bool FlowSelector::matches(const Flow& f, const LocalAddresses& local) const {
  if (f.family != family || f.proto != proto || f.orig.dport != dport) return false;
  if (anyLocalAddress ? !local.contains(f.orig.dst) : f.orig.dst != dst) return false;
  switch (reason) {
    case StaleReason::EndpointGone:
      return f.translated() && f.reply.src == endpoint && f.reply.sport == endpointPort;
    case StaleReason::Untranslated:
      return !f.translated();
    case StaleReason::FrontendRemoved:
      return f.translated();
  }
  return false;
}

std::string FlowSelector::str() const {
  std::string to = anyLocalAddress
                       ? fmt::format("{} to any local address:{}", protoName(proto), dport)
                       : fmt::format("{} to {}", protoName(proto), hostPort(dst, dport));
  std::string by = reason == StaleReason::EndpointGone
                       ? fmt::format(" answered by {}", hostPort(endpoint, endpointPort))
                   : reason == StaleReason::Untranslated ? std::string(" never translated")
                                                         : std::string(" translated");
  return fmt::format("{}{} ({}{}{})", to, by, reasonName(reason), service ? ", " : "",
                     service ? service->key.str() : std::string());
}

}  // namespace sliceproxy::conntrack
