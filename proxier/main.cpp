// sliceproxy: watches Services and EndpointSlices and programs this node's data plane.

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "backends/backend_factory.h"
#include "proxier/change_tracker.h"
#include "proxier/config.h"
#include "proxier/duration.h"
#include "proxier/proxier.h"
#include "proxier/sync_runner.h"
#include "proxier/view_json.h"
#include "slice-watch/source.h"

using namespace sliceproxy;

namespace {

constexpr int kExitUsage = 2;

void setupLogging(int verbosity) {
  // Logs go to stderr so that stdout stays clean for the dry-run backend's JSON lines.
  auto logger = spdlog::stderr_color_mt("sliceproxy");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbosity >= 4   ? spdlog::level::trace
                    : verbosity >= 2 ? spdlog::level::debug
                                     : spdlog::level::info);
}

int runCleanup(const proxier::Config& cfg) {
  std::string error;
  auto backend = backends::makeBackend(cfg.backend, cfg.network, error);
  if (!backend) {
    spdlog::error("{}", error);
    return kExitUsage;
  }
  auto res = backend->cleanup();
  if (!res.ok) {
    spdlog::error("cleanup with backend {} failed: {}", backend->name(), res.error);
    return 1;
  }
  spdlog::info("cleanup with backend {}: removed {} kernel objects", backend->name(),
               res.operations);
  return 0;
}

int printCapabilities(const proxier::Config& cfg) {
  std::string error;
  auto backend = backends::makeBackend(cfg.backend, cfg.network, error);
  if (!backend) {
    spdlog::error("{}", error);
    return kExitUsage;
  }
  std::cout << capabilitiesJson(*backend) << std::endl;
  return 0;
}

int runDaemon(const proxier::Config& cfg) {
  std::string error;
  auto backend = backends::makeBackend(cfg.backend, cfg.network, error);
  if (!backend) {
    spdlog::error("{}", error);
    return kExitUsage;
  }
  const std::string nodeName = proxier::resolveNodeName(cfg);
  spdlog::info("sliceproxy starting: node {}, backend {}, min-sync-period {}, sync-period {}",
               nodeName, backend->name(), proxier::formatDuration(cfg.minSyncPeriod),
               proxier::formatDuration(cfg.syncPeriod));

  // Signals are taken synchronously by the main thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  proxier::ChangeTracker tracker(nodeName, proxier::FilterConfig{cfg.serviceProxyName});
  proxier::Proxier proxy(tracker, *backend, nodeName);
  proxier::SyncRunner runner(
      {std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.minSyncPeriod), 2,
       std::chrono::hours(1),
       std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.syncPeriod)},
      [&] { return proxy.syncOnce(); });
  tracker.setOnChange([&] { runner.run(); });
  runner.start();

  slicewatch::SourceOptions sourceOpts{cfg.sourceDir, cfg.kubeconfig, cfg.master, nodeName,
                                       cfg.serviceProxyName};
  auto source = slicewatch::makeSource(sourceOpts, tracker, error);
  if (!source) {
    spdlog::error("{}", error);
    runner.stop();
    return kExitUsage;
  }
  try {
    source->start();
  } catch (const std::exception& e) {
    spdlog::error("cannot start {}: {}", source->describe(), e.what());
    runner.stop();
    return 1;
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, stopping; the data plane is left as programmed",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  source->stop();
  runner.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sliceproxy: a kube-proxy replacement that programs nftables, IPVS or eBPF"};
  // Flags may follow a subcommand (sliceproxy cleanup --backend nftables).
  app.fallthrough();
  app.set_version_flag("--version", std::string("sliceproxy ") + SLICEPROXY_VERSION);
  proxier::Config cfg;
  std::string minSync = "1s", sync = "30s";
  app.add_option("--backend", cfg.backend, "Data plane to program: nftables, or dry-run (prints what it would program)")->capture_default_str();
  app.add_option("--source-dir", cfg.sourceDir,
                 "Read Services, EndpointSlices and Nodes from YAML/JSON manifests in DIR, watched "
                 "with inotify");
  app.add_option("--kubeconfig", cfg.kubeconfig,
                 "Path to a kubeconfig (default: in-cluster configuration)");
  app.add_option("--master", cfg.master, "Kubernetes API server address; overrides the kubeconfig");
  app.add_option("--hostname-override", cfg.hostnameOverride,
                 "This node's name (default: $NODE_NAME, else the host name)");
  app.add_option("--min-sync-period", minSync,
                 "Minimum time between syncs; bursts of changes coalesce (Go duration)")
      ->capture_default_str();
  app.add_option("--sync-period", sync, "Retry interval after a failed sync (Go duration)")
      ->capture_default_str();
  app.add_option("--service-proxy-name", cfg.serviceProxyName,
                 "Handle only objects labelled service.kubernetes.io/service-proxy-name=NAME");
  app.add_option("-v,--v", cfg.verbosity, "Log verbosity: 0 info, 2 debug, 4 trace")
      ->capture_default_str();
  app.add_option("--cluster-cidr", cfg.clusterCIDRs,
                 "Pod CIDRs of the cluster, one per family (comma-separated); traffic from them is "
                 "local for --detect-local-mode=ClusterCIDR")
      ->delimiter(',');
  app.add_option("--detect-local-mode", cfg.detectLocalMode,
                 "How to tell pod traffic from outside traffic: ClusterCIDR, NodeCIDR, "
                 "InterfaceNamePrefix, BridgeInterface (default ClusterCIDR when --cluster-cidr "
                 "is set)");
  app.add_option("--pod-interface-name-prefix", cfg.network.podInterfacePrefix,
                 "Pod interface name prefix, for --detect-local-mode=InterfaceNamePrefix");
  app.add_option("--pod-bridge-interface", cfg.network.podBridgeInterface,
                 "Pod bridge name, for --detect-local-mode=BridgeInterface");
  app.add_flag("--masquerade-all", cfg.network.masqueradeAll,
               "Masquerade all traffic sent to service addresses");
  app.add_option("--masquerade-bit", cfg.masqueradeBit,
                 "Bit of the packet mark that flags traffic to masquerade (0..31)")
      ->capture_default_str();
  app.add_option("--snat-address", cfg.snatAddresses,
                 "SNAT masqueraded traffic to this fixed address instead of MASQUERADE (one per "
                 "family, comma-separated), for hosts whose egress address is not routable")
      ->delimiter(',');
  app.add_option("--nodeport-addresses", cfg.nodePortAddresses,
                 "CIDRs of local addresses that accept NodePorts, or \"primary\" for the Node's "
                 "InternalIPs (default: every local address)")
      ->delimiter(',');
  auto* cleanup = app.add_subcommand("cleanup", "Remove everything sliceproxy programmed and exit");
  auto* capabilities = app.add_subcommand(
      "capabilities", "Print, as JSON, the service features the chosen --backend supports");
  CLI11_PARSE(app, argc, argv);

  setupLogging(cfg.verbosity);
  for (auto [text, target, flag] : {std::tuple{&minSync, &cfg.minSyncPeriod, "--min-sync-period"},
                                    std::tuple{&sync, &cfg.syncPeriod, "--sync-period"}}) {
    auto d = proxier::parseDuration(*text);
    if (!d || d->count() < 0) {
      spdlog::error("{}: \"{}\" is not a duration (examples: 500ms, 1s, 1m30s)", flag, *text);
      return kExitUsage;
    }
    *target = *d;
  }
  if (auto err =
          proxier::buildNetworkConfig(cfg.network, cfg.clusterCIDRs, cfg.detectLocalMode,
                                      cfg.snatAddresses, cfg.nodePortAddresses, cfg.masqueradeBit);
      !err.empty()) {
    spdlog::error("{}", err);
    return kExitUsage;
  }
  if (*cleanup) return runCleanup(cfg);
  if (*capabilities) return printCapabilities(cfg);
  return runDaemon(cfg);
}
