#pragma once
// What a sync made stale, stated as a predicate over flows: "UDP flows to 10.96.0.10:53 whose
// reply comes from 10.244.1.5:53". The planner produces selectors from a Diff; a cleaner turns
// them into kernel-side filters and deletes what matches.

#include <cstdint>
#include <string>

#include "conntrack/flow.h"
#include "conntrack/local_addresses.h"
#include "proxier/core/service_port.h"

namespace sliceproxy::conntrack {

enum class StaleReason : uint8_t {
  // The endpoint no longer serves this frontend: delete translated flows answered by it.
  EndpointGone,
  // The frontend went from no usable endpoint to some: delete flows that were never translated
  // (sent before the service had endpoints, they stay stuck on where they first went).
  Untranslated,
  // The frontend is no longer a service address: delete flows still translated to its old
  // endpoints.
  FrontendRemoved,
};

const char* reasonName(StaleReason r);

struct FlowSelector {
  StaleReason reason = StaleReason::EndpointGone;
  IpFamily family = IpFamily::V4;
  uint8_t proto = 0;
  bool anyLocalAddress = false;  // a NodePort: the original destination is any local address
  IpAddr dst;                    // the original destination, unless anyLocalAddress
  uint16_t dport = 0;
  IpAddr endpoint;  // EndpointGone: the reply source
  uint16_t endpointPort = 0;
  proxier::ServicePortInfoPtr service;  // for logs

  bool matches(const Flow& f, const LocalAddresses& local) const;
  // "UDP to 10.96.0.10:53 answered by 10.244.1.5:53 (endpoint gone, default/dns:dns/UDP/IPv4)"
  std::string str() const;

  friend bool operator==(const FlowSelector& a, const FlowSelector& b) {
    return a.reason == b.reason && a.family == b.family && a.proto == b.proto &&
           a.anyLocalAddress == b.anyLocalAddress && a.dst == b.dst && a.dport == b.dport &&
           a.endpoint == b.endpoint && a.endpointPort == b.endpointPort;
  }
};

}  // namespace sliceproxy::conntrack
