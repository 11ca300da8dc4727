#pragma once
// From "what a service port was programmed as" and "what it is programmed as now" to the
// selectors of the flows that change made stale. Pure logic: no kernel, no state.

#include <span>
#include <vector>

#include "conntrack/selector.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::conntrack {

struct EndpointTransition {
  proxier::EndpointKey key;
  uint8_t before = 0, after = 0;  // epset bits
};

struct PortTransition {
  proxier::ServicePortInfoPtr before;  // null: the port was not programmed
  proxier::ServicePortInfoPtr after;   // null: the port is no longer programmed
  uint32_t beforeCluster = 0, beforeLocal = 0, afterCluster = 0, afterLocal = 0;
  // Endpoints whose sets changed. When servingChanged(before, after), also every other endpoint
  // of the port (with before == after), since which sets serve a frontend moved under them.
  std::span<const EndpointTransition> endpoints;
};

// True when a policy change moved which endpoint sets serve some frontend kind.
bool servingChanged(const proxier::ServicePortInfo& before, const proxier::ServicePortInfo& after);

// Appends the selectors for one port's transition:
//  - a frontend the port no longer has: its translated flows (FrontendRemoved);
//  - a frontend served by no endpoint before and by some now: its untranslated flows
//    (Untranslated; a frontend the port did not have before counts as served by none);
//  - an endpoint that served a frontend and no longer does: the flows it answers for that
//    frontend (EndpointGone).
void planTransition(const PortTransition& t, std::vector<FlowSelector>& out);

}  // namespace sliceproxy::conntrack
