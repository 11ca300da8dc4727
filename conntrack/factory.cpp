#include "conntrack/factory.h"

#include <spdlog/spdlog.h>

#include "conntrack/netfilter_cleaner.h"
#include "proxier/config/duration.h"

namespace sliceproxy::conntrack {

std::unique_ptr<StaleFlowCleanup> makeStaleFlowCleanup(const proxier::BackendInfo& backend,
                                                       bool enabled,
                                                       std::chrono::nanoseconds reconcilePeriod,
                                                       proxier::Proxier& proxy,
                                                       proxier::ConntrackMetrics* metrics,
                                                       std::shared_ptr<proxier::FlowIndex> flows) {
  if (!enabled) {
    spdlog::info("conntrack cleanup disabled: stale UDP flows stay until they time out");
    return nullptr;
  }
  const bool sctpOnly = backend.cleaner == proxier::StaleFlowCleaner::BackendSctpConntrack;
  if (backend.cleaner != proxier::StaleFlowCleaner::Conntrack && !sctpOnly) {
    spdlog::info("conntrack cleanup: backend {} keeps no conntrack flows to clean{}", backend.name,
                 backend.cleaner == proxier::StaleFlowCleaner::Backend
                     ? " (it removes its own stale flows)"
                     : "");
    return nullptr;
  }
  NetfilterCleanerOptions cleanerOpts;
  cleanerOpts.sctpOnly = sctpOnly;
  auto cleaner = std::make_unique<NetfilterCleaner>(cleanerOpts);
  if (sctpOnly && !cleaner->sctpTracked()) {
    spdlog::info(
        "conntrack cleanup: backend {} removes its own stale flows; the kernel tracks "
        "no SCTP",
        backend.name);
    return nullptr;
  }
  const bool recorded = flows != nullptr;
  cleaner->setFlowIndex(std::move(flows));
  spdlog::info("conntrack cleanup: {} flows, found {}, reconcile {}",
               sctpOnly                 ? "SCTP (the backend removes its own TCP and UDP ones)"
               : cleaner->sctpTracked() ? "UDP and SCTP"
                                        : "UDP",
               recorded ? "through the data plane's flow record" : "by walking the table",
               reconcilePeriod.count() > 0 ? "every " + proxier::formatDuration(reconcilePeriod)
                                           : std::string("after start only"));
  CleanupOptions opts;
  opts.reconcilePeriod = reconcilePeriod;
  opts.metrics = metrics;
  return std::make_unique<StaleFlowCleanup>(std::move(cleaner), proxy.nodeState(),
                                            &proxy.stateMutex(), opts);
}

}  // namespace sliceproxy::conntrack
