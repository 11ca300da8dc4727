// sliceproxy: watches Services and EndpointSlices and programs this node's data plane.

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "backends/registry.h"
#include "conntrack/factory.h"
#include "proxier/cmd/kube_proxy_cleanup/kube_proxy_cleanup.h"
#include "proxier/config/backend_choice.h"
#include "proxier/config/config.h"
#include "proxier/config/duration.h"
#include "proxier/config/kube_proxy_config.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/proxier.h"
#include "proxier/core/sync_runner.h"
#include "proxier/failing_backend.h"
#include "proxier/ops/explain.h"
#include "proxier/ops/ops.h"
#include "proxier/ops/view_json.h"
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
  auto backend = proxier::makeBackend(backends::registry(), cfg.backend, cfg.network, error);
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

int runCleanupKubeProxy(const std::vector<std::string>& excludeCIDRs, bool withoutKubeIpvs0) {
  proxier::kube_proxy_cleanup::Options opts;
  opts.ipvsWithoutKubeIpvs0 = withoutKubeIpvs0;
  for (const auto& text : excludeCIDRs) {
    auto c = proxier::Cidr::parse(text);
    if (!c) {
      spdlog::error("--ipvs-exclude-cidrs: \"{}\" is not a CIDR", text);
      return kExitUsage;
    }
    opts.ipvsExcludeCIDRs.push_back(*c);
  }
  auto report = proxier::kube_proxy_cleanup::cleanupKubeProxy(opts);
  for (const auto& r : report.removed) std::cout << "removed: " << r << "\n";
  for (const auto& f : report.found) std::cout << "checked: " << f << "\n";
  std::cout << std::flush;
  for (const auto& e : report.errors) spdlog::error("cleanup-kube-proxy: {}", e);
  if (!report.ok()) return 1;
  spdlog::info("cleanup-kube-proxy: {}", report.removed.empty()
                                             ? "nothing of kube-proxy's was left on this node"
                                             : "kube-proxy's leftovers are removed");
  return 0;
}

int printCapabilities(const proxier::Config& cfg) {
  // Declared, not probed: capabilities are printed also where this kernel cannot run the
  // backend (the answer's "kernel" part says so).
  const auto* info = proxier::findBackend(backends::registry(), cfg.backend);
  if (!info) {
    spdlog::error("--backend: unknown backend \"{}\"; this build has: {}", cfg.backend,
                  proxier::backendNames(backends::registry()));
    return kExitUsage;
  }
  std::cout << capabilitiesJson(*info) << std::endl;
  return 0;
}

int runExplain(int port, const std::string& target, const std::string& from, bool asJson) {
  std::string error, body;
  if (!proxier::parseExplainTarget(target, from, error)) {
    spdlog::error("explain: {}", error);
    return kExitUsage;
  }
  auto enc = [](const std::string& v) {
    std::string out;
    for (unsigned char c : v) {
      if (std::isalnum(c) || c == '.' || c == '-' || c == '_') {
        out += static_cast<char>(c);
      } else {
        out += fmt::format("%{:02X}", c);
      }
    }
    return out;
  };
  unsigned status = proxier::httpGetLoopback(
      static_cast<uint16_t>(port), "/debug/explain?target=" + enc(target) + "&from=" + enc(from),
      body, error);
  if (status == 0) {
    spdlog::error("explain: cannot reach the daemon on 127.0.0.1:{} (--debug-port): {}", port,
                  error);
    return 1;
  }
  if (status != 200) {
    spdlog::error("explain: daemon answered {}: {}", status, body);
    return 1;
  }
  if (asJson) {
    std::cout << body;
  } else {
    std::cout << proxier::explainText(boost::json::parse(body).as_object());
  }
  return 0;
}

int runDaemon(const proxier::Config& cfg) {
  std::string error;
  auto backend = proxier::makeBackend(backends::registry(), cfg.backend, cfg.network, error);
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
  std::unique_ptr<proxier::Backend> failing;
  if (cfg.testingFailFirstSyncs > 0) {
    failing = std::make_unique<proxier::FailingBackend>(*backend, cfg.testingFailFirstSyncs);
  }
  proxier::Proxier proxy(tracker, failing ? *failing : *backend, nodeName);
  proxier::Ops ops(cfg, tracker, proxy, *backend);
  if (auto err = ops.start(); !err.empty()) {
    spdlog::error("{}", err);
    return 1;
  }
  auto conntrackCleanup = conntrack::makeStaleFlowCleanup(
      *proxier::findBackend(backends::registry(), cfg.backend), cfg.conntrackCleanup,
      cfg.conntrackReconcilePeriod, proxy, &ops.metrics(), backend->flowIndex());
  if (conntrackCleanup) proxy.addObserver(conntrackCleanup.get());
  proxier::SyncRunner runner(
      {std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.minSyncPeriod), 2,
       std::chrono::hours(1),
       std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.syncPeriod)},
      [&] { return proxy.syncOnce(); });
  tracker.setOnChange([&] {
    ops.queued();
    runner.run();
  });
  runner.start();

  slicewatch::SourceOptions sourceOpts{cfg.sourceDir, cfg.kubeconfig, cfg.master, nodeName,
                                       cfg.serviceProxyName};
  auto source = slicewatch::makeSource(sourceOpts, tracker, error);
  if (!source) {
    spdlog::error("{}", error);
    runner.stop();
    return kExitUsage;
  }
  ops.health().setSourceHealth([&source] { return source->health(); }, cfg.sourceProgressTimeout);
  try {
    source->start();
  } catch (const std::exception& e) {
    spdlog::error("cannot start {}: {}", source->describe(), e.what());
    ops.stop();
    runner.stop();
    return 1;
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, stopping; the data plane is left as programmed",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  ops.stop();
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
  std::string minSync = "1s", sync = "30s", conntrackReconcile = "0s", sourceProgress = "2m";
  app.add_option("--backend", cfg.backend,
                 "Data plane to program: " + proxier::backendNames(backends::registry()) +
                     " (`sliceproxy backends` describes each; dry-run prints what it would "
                     "program)")
      ->capture_default_str();
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
  app.add_flag("--conntrack-cleanup,!--no-conntrack-cleanup", cfg.conntrackCleanup,
               "After each sync, delete the UDP/SCTP conntrack entries it made stale (default on)");
  app.add_option("--conntrack-reconcile-period", conntrackReconcile,
                 "Also sweep every UDP/SCTP conntrack entry for stale ones this often (Go "
                 "duration; 0s: never)")
      ->capture_default_str();
  app.add_option("--source-progress-timeout", sourceProgress,
                 "/healthz fails (503) while the API source has made no progress (no list, watch "
                 "event or working watch) for this long (Go duration; 0s: never)")
      ->capture_default_str();
  app.add_option("--healthz-bind-address", cfg.healthzBindAddress,
                 "host:port for /healthz and /livez (\"\" disables)")
      ->capture_default_str();
  app.add_option("--metrics-bind-address", cfg.metricsBindAddress,
                 "host:port for /metrics (\"\" disables)")
      ->capture_default_str();
  app.add_option("--debug-port", cfg.debugPort,
                 "Port on 127.0.0.1 for /debug/state and `sliceproxy explain` (0 disables)")
      ->capture_default_str();
  app.add_option("--testing-fail-first-syncs", cfg.testingFailFirstSyncs)->group("");
  std::string configFile, writeConfigTo;
  app.add_option("--config", configFile,
                 "KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1); flags given "
                 "on the command line override it");
  app.add_option("--write-config-to", writeConfigTo,
                 "Write the effective configuration to FILE as a KubeProxyConfiguration and exit");
  auto* cleanup = app.add_subcommand("cleanup", "Remove everything sliceproxy programmed and exit");
  auto* cleanupKubeProxy = app.add_subcommand(
      "cleanup-kube-proxy",
      "Remove what kube-proxy left on this node (KUBE-* iptables chains, nftables tables "
      "ip/ip6 kube-proxy, IPVS services, kube-ipvs0, KUBE-* ipsets) and nothing else");
  std::vector<std::string> ipvsExcludeCIDRs;
  bool ipvsWithoutKubeIpvs0 = false;
  cleanupKubeProxy
      ->add_option("--ipvs-exclude-cidrs", ipvsExcludeCIDRs,
                   "IPVS services with an address in these CIDRs stay (default: the --config "
                   "file's ipvs.excludeCIDRs)")
      ->delimiter(',');
  cleanupKubeProxy->add_flag("--ipvs-without-kube-ipvs0", ipvsWithoutKubeIpvs0,
                             "Remove IPVS services even when there is no kube-ipvs0 link (by "
                             "default they are then not kube-proxy's and stay)");
  auto* capabilities = app.add_subcommand(
      "capabilities", "Print, as JSON, the service features the chosen --backend supports");
  auto* backendsCmd = app.add_subcommand(
      "backends", "Print, as JSON, the backends of this build and whether this kernel runs each");
  auto* explainCmd = app.add_subcommand(
      "explain", "Ask the running daemon (--debug-port) what a packet to ADDRESS:PORT would meet");
  std::string explainTarget, explainFrom, explainOutput = "text";
  explainCmd->add_option("target", explainTarget, "ADDRESS:PORT[/tcp|udp]")->required();
  explainCmd->add_option("--from", explainFrom, "Source address of the packet");
  explainCmd->add_option("-o,--output", explainOutput, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  CLI11_PARSE(app, argc, argv);
  if (*explainCmd) {
    setupLogging(cfg.verbosity);
    return runExplain(cfg.debugPort, explainTarget, explainFrom, explainOutput == "json");
  }

  setupLogging(cfg.verbosity);
  if (*backendsCmd) {
    std::cout << proxier::backendsJson(backends::registry()) << std::endl;
    return 0;
  }
  if (!configFile.empty()) {
    auto res = proxier::applyConfigFile(configFile, cfg, minSync, sync, [&](const std::string& f) {
      auto* opt = app.get_option_no_throw(f);
      return opt && opt->count() > 0;
    });
    for (const auto& w : res.warnings) spdlog::warn("{}", w);
    if (!res.error.empty()) {
      spdlog::error("{}", res.error);
      return kExitUsage;
    }
  }
  if (app.get_option("--backend")->count() > 0) cfg.backendNamed = true;
  // cleanup-kube-proxy reads kube-proxy's own configuration (mode: ipvs, say) and programs no
  // backend, so the backend choice does not concern it.
  if (!*cleanupKubeProxy) {
    std::vector<std::string> warnings;
    auto err = proxier::chooseBackend(cfg, backends::registry(), warnings);
    for (const auto& w : warnings) spdlog::warn("{}", w);
    if (!err.empty()) {
      spdlog::error("{}", err);
      return kExitUsage;
    }
  }
  for (auto [text, target, flag] :
       {std::tuple{&minSync, &cfg.minSyncPeriod, "--min-sync-period"},
        std::tuple{&sync, &cfg.syncPeriod, "--sync-period"},
        std::tuple{&conntrackReconcile, &cfg.conntrackReconcilePeriod,
                   "--conntrack-reconcile-period"},
        std::tuple{&sourceProgress, &cfg.sourceProgressTimeout, "--source-progress-timeout"}}) {
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
  if (auto err = proxier::validateOpsConfig(cfg); !err.empty()) {
    spdlog::error("{}", err);
    return kExitUsage;
  }
  if (!writeConfigTo.empty()) {
    std::ofstream out(writeConfigTo);
    out << proxier::renderConfig(cfg);
    if (!out.flush()) {
      spdlog::error("--write-config-to: cannot write {}", writeConfigTo);
      return 1;
    }
    spdlog::info("wrote the effective configuration to {}", writeConfigTo);
    return 0;
  }
  if (*cleanup) return runCleanup(cfg);
  if (*cleanupKubeProxy) {
    return runCleanupKubeProxy(ipvsExcludeCIDRs.empty() ? cfg.ipvs.excludeCIDRs : ipvsExcludeCIDRs,
                               ipvsWithoutKubeIpvs0);
  }
  if (*capabilities) return printCapabilities(cfg);
  return runDaemon(cfg);
}
