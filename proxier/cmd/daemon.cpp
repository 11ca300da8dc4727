#include "proxier/cmd/daemon.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "backends/registry.h"
#include "conntrack/factory.h"
#include "conntrack/sysctl_settings.h"
#include "proxier/cmd/exit_codes.h"
#include "proxier/config/duration.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/proxier.h"
#include "proxier/core/sync_runner.h"
#include "proxier/ops/ops.h"
#include "slice-watch/source.h"

namespace sliceproxy::proxier::cmd {

namespace {

conntrack::ApplyReport applyConntrackSettings(const Config& cfg) {
  return conntrack::applyConntrackSettings(cfg.conntrack,
                                           static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

int runDaemon(const Config& cfg, const Extensions& ext) {
  std::string error;
  // Before the backend probes or programs anything: a missing capability is a deployment
  // error (exit 2, not restarted), not a kernel failure to retry every sync.
  const bool checkCapabilities = !ext.skipCapabilityCheck || !ext.skipCapabilityCheck();
  if (const auto* info = findBackend(backends::registry(), cfg.backend);
      info && checkCapabilities) {
    if (auto missing = missingCapabilities(info->name, info->linuxCapabilities); !missing.empty()) {
      spdlog::error("{}", missing);
      return kExitUsage;
    }
  }
  auto backend = makeBackend(backends::registry(), cfg.backend, cfg.network, error);
  if (!backend) {
    spdlog::error("{}", error);
    return kExitUsage;
  }
  const std::string nodeName = resolveNodeName(cfg);
  spdlog::info("sliceproxy starting: node {}, backend {}, min-sync-period {}, sync-period {}",
               nodeName, backend->name(), formatDuration(cfg.minSyncPeriod),
               formatDuration(cfg.syncPeriod));

  // Signals are taken synchronously by the main thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ChangeTracker tracker(nodeName, FilterConfig{cfg.serviceProxyName});
  std::unique_ptr<Backend> wrapped = ext.wrapBackend ? ext.wrapBackend(*backend) : nullptr;
  Proxier proxy(tracker, wrapped ? *wrapped : *backend, nodeName);
  proxy.setNodeIpOverride(cfg.network.nodeIpOverride);
  if (cfg.network.nodeIpOverride) {
    spdlog::info("--bind-address {}: this node's primary {} address",
                 cfg.network.nodeIpOverride->str(), familyName(cfg.network.nodeIpOverride->family));
  }
  Ops ops(cfg, tracker, proxy, *backend);
  if (auto err = ops.start(); !err.empty()) {
    spdlog::error("{}", err);
    return kExitListen;
  }
  const BackendInfo& info = *findBackend(backends::registry(), cfg.backend);
  // The conntrack table's size and timeouts matter to the netfilter data planes, as in
  // kube-proxy; the first sync loads nf_conntrack if it was not, so what could not be found
  // now is applied after it.
  std::atomic<bool> conntrackSettingsPending = false;
  if (info.cleaner == StaleFlowCleaner::Conntrack) {
    conntrackSettingsPending = applyConntrackSettings(cfg).missing;
  }
  auto conntrackCleanup =
      conntrack::makeStaleFlowCleanup(info, cfg.conntrackCleanup, cfg.conntrackReconcilePeriod,
                                      proxy, &ops.metrics(), backend->flowIndex());
  if (conntrackCleanup) proxy.addObserver(conntrackCleanup.get());
  ops.metrics().watchFlowRecord(backend->flowIndex());
  // As kube-proxy's --sync-period: a sync at least that often, which finds nothing to change
  // but checks that the data plane is still there (Backend::drift()).
  const auto syncPeriod =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.syncPeriod);
  SyncRunner runner(
      {std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.minSyncPeriod), 2,
       syncPeriod, syncPeriod},
      [&] {
        bool ok = proxy.syncOnce();
        if (ok && conntrackSettingsPending.exchange(false)) applyConntrackSettings(cfg);
        return ok;
      });
  tracker.setOnChange([&] {
    ops.queued();
    runner.run();
  });
  runner.start();

  slicewatch::SourceOptions sourceOpts{cfg.sourceDir,        cfg.kubeconfig,
                                       cfg.master,           nodeName,
                                       cfg.serviceProxyName, cfg.manifestMaxFileBytes};
  auto source = slicewatch::makeSource(sourceOpts, tracker, error);
  if (!source) {
    spdlog::error("{}", error);
    runner.stop();
    return kExitUsage;
  }
  ops.health().setSourceHealth([&source] { return source->health(); }, cfg.sourceProgressTimeout);
  // Warning events on Services (frontend conflicts); set before the first sync, which waits for
  // the source's lists. Declared after the runner: the sync thread stops before it goes.
  auto objectEvents = source->makeEventRecorder(nodeName);
  if (objectEvents) proxy.setObjectEvents(objectEvents.get());
  try {
    source->start();
  } catch (const std::exception& e) {
    spdlog::error("cannot start {}: {}", source->describe(), e.what());
    ops.stop();
    runner.stop();
    proxy.setObjectEvents(nullptr);
    return 1;
  }

  int sig = 0;
  // SIGHUP (systemctl reload): reprogram everything from scratch at once, e.g. after another
  // program changed the ruleset. State kube-proxy keeps (affinity) is kept.
  for (sigwait(&signals, &sig); sig == SIGHUP; sigwait(&signals, &sig)) {
    spdlog::info("received SIGHUP: the next sync is full");
    proxy.forceFullSync();
    runner.run();
  }
  spdlog::info("received {}, stopping; the data plane is left as programmed",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  ops.stop();
  source->stop();
  runner.stop();
  proxy.setObjectEvents(nullptr);
  return 0;
}

}  // namespace sliceproxy::proxier::cmd
