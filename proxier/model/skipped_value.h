#pragma once

#include <string>

namespace sliceproxy::proxier {

// A value a decoder could not use and left out, keeping the rest of the object, where kube-proxy
// does the same (one bad externalIP, source range or load-balancer address; an enum value this
// version does not know, read as the default). Reported when the object is tracked.
struct SkippedValue {
  std::string field;  // JSON path, e.g. spec.externalIPs[1]
  std::string reason;
  std::string message;
  friend bool operator==(const SkippedValue&, const SkippedValue&) = default;
};

}  // namespace sliceproxy::proxier
