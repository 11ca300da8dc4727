#pragma once
// Which stale-flow cleaner a data plane gets, as its registry entry says: the kernel's conntrack
// table for the netfilter data planes; none for a backend that cleans its own flows or has none.

#include <chrono>
#include <memory>
#include <string>

#include "conntrack/stale_flow_cleanup.h"
#include "proxier/core/backend_registry.h"
#include "proxier/core/flow_index.h"

namespace sliceproxy::conntrack {

// Null when cleanup is disabled or the backend keeps no flows that need it. The result must be
// registered with proxy.addObserver() and outlive the sync runner. `metrics` may be null;
// `flows` (may be null) is the data plane's record of the flows it translated.
std::unique_ptr<StaleFlowCleanup> makeStaleFlowCleanup(const proxier::BackendInfo& backend,
                                                       bool enabled,
                                                       std::chrono::nanoseconds reconcilePeriod,
                                                       proxier::Proxier& proxy,
                                                       proxier::ConntrackMetrics* metrics,
                                                       std::shared_ptr<proxier::FlowIndex> flows);

}  // namespace sliceproxy::conntrack
