#include "proxier/cmd/run.h"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "backends/ebpf/maglev.h"
#include "backends/registry.h"
#include "proxier/cmd/daemon.h"
#include "proxier/cmd/exit_codes.h"
#include "proxier/cmd/subcommands.h"
#include "proxier/config/backend_choice.h"
#include "proxier/config/config.h"
#include "proxier/config/duration.h"
#include "proxier/config/kube_proxy_config.h"
#include "proxier/config/network_config.h"
#include "proxier/ops/ops.h"

namespace sliceproxy::proxier::cmd {

namespace {

void setupLogging(int verbosity) {
  // Logs go to stderr so that stdout stays clean for the dry-run backend's JSON lines.
  auto logger = spdlog::stderr_color_mt("sliceproxy");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbosity >= 4   ? spdlog::level::trace
                    : verbosity >= 2 ? spdlog::level::debug
                                     : spdlog::level::info);
}

}  // namespace

int run(int argc, char** argv, const Extensions& ext) {
  CLI::App app{"sliceproxy: a kube-proxy replacement that programs nftables, IPVS or eBPF"};
  // Flags may follow a subcommand (sliceproxy cleanup --backend nftables).
  app.fallthrough();
  app.set_version_flag("--version", std::string("sliceproxy ") + SLICEPROXY_VERSION);
  Config cfg;
  std::string minSync = "1s", sync = "30s", conntrackReconcile = "0s", sourceProgress = "2m";
  app.add_option("--backend", cfg.backend,
                 "Data plane to program: " + backendNames(backends::registry()) +
                     " (`sliceproxy backends` describes each; dry-run prints what it would "
                     "program)")
      ->capture_default_str();
  app.add_option("--source-dir", cfg.sourceDir,
                 "Read Services, EndpointSlices and Nodes from YAML/JSON manifests in DIR, watched "
                 "with inotify");
  app.add_option("--manifest-max-file-bytes", cfg.manifestMaxFileBytes,
                 "Manifest files larger than this are refused unread, each with one line naming "
                 "it (bounds the memory one file can take)")
      ->capture_default_str();
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
  app.add_option("--flow-record-max", cfg.network.flowRecordMax,
                 "Capacity of the record of UDP/SCTP flows sliceproxy translated, which conntrack "
                 "cleanup reads instead of walking the conntrack table (0: no record)")
      ->capture_default_str();
  app.add_option("--ipvs-scheduler", cfg.network.ipvsScheduler,
                 "IPVS scheduler of the ipvs backend's virtual services: rr (default), sh, mh, "
                 "... (else the config file's ipvs.scheduler)");
  app.add_option("--masquerade-bit", cfg.masqueradeBit,
                 "Bit of the packet mark that flags traffic to masquerade (0..31)")
      ->capture_default_str();
  app.add_option("--snat-address", cfg.snatAddresses,
                 "SNAT masqueraded traffic to this fixed address instead of MASQUERADE (one per "
                 "family, comma-separated), for hosts whose egress address is not routable")
      ->delimiter(',');
  app.add_option("--bind-address", cfg.bindAddress,
                 "This node's primary IP of its family, in place of the Node's first InternalIP "
                 "(kube-proxy's flag: nothing binds to it; 0.0.0.0 and :: mean no override); "
                 "\"--nodeport-addresses primary\" serves on it")
      ->capture_default_str();
  app.add_option(
         "--nodeport-addresses", cfg.nodePortAddresses,
         "CIDRs of local addresses that accept NodePorts, or \"primary\" for the node's "
         "primary IPs (its first InternalIP of each family, --bind-address; default: every local "
         "address)")
      ->delimiter(',');
  app.add_option("--cgroup-root", cfg.network.cgroupRoot,
                 "eBPF backend: cgroup v2 directory whose processes get socket load balancing "
                 "(default: the cgroup2 mount)");
  app.add_option("--bpf-pin-dir", cfg.network.bpfPinDir,
                 "eBPF backend: where its programs' links and maps are pinned, on a bpf "
                 "filesystem; a restart adopts them")
      ->capture_default_str();
  app.add_flag("--sockmap-shortcut", cfg.network.sockmapShortcut,
               "eBPF backend: hand the bytes of TCP connections whose two ends are on this node "
               "(in --cgroup-root) straight to the peer socket, skipping the TCP/IP stack");
  app.add_option("--maglev-table-size", cfg.network.maglevTableSize,
                 "eBPF backend: Maglev lookup table size (a prime) for traffic from outside the "
                 "node; services with more than 1% as many backends get a larger prime")
      ->capture_default_str()
      ->check([](const std::string& v) {
        try {
          return ::sliceproxy::backends::ebpf::maglevTableSizeError(std::stoull(v));
        } catch (const std::exception&) {
          return "--maglev-table-size " + v + ": not a number";
        }
      });
  app.add_option("--devices", cfg.network.devices,
                 "eBPF backend: interfaces whose tc ingress/egress get the load balancer for "
                 "traffic from outside the node (NodePort, externalIPs, LB addresses); "
                 "PREFIX+ matches by prefix; default + (every interface, as netfilter's hooks "
                 "see every one); none: off")
      ->delimiter(',');
  app.add_flag("--enable-dsr", cfg.network.directServerReturn,
               "eBPF backend: direct server return for externalTrafficPolicy Cluster: traffic "
               "from outside keeps its client address and the backend's node answers the client "
               "itself (every node runs sliceproxy's eBPF backend; see backends/ebpf/NODEPORT.md)");
  app.add_flag("--conntrack-cleanup,!--no-conntrack-cleanup", cfg.conntrackCleanup,
               "After each sync, delete the UDP/SCTP conntrack entries it made stale (default on)");
  // kube-proxy's conntrack flags (KubeProxyConfiguration `conntrack`), applied at start to the
  // kernel for the netfilter backends.
  std::string ctEstablished = "24h", ctCloseWait = "1h", ctUdp = "0s", ctUdpStream = "0s";
  app.add_option("--conntrack-max-per-core", cfg.conntrack.maxPerCore,
                 "nf_conntrack_max per CPU (0: leave the limit as it is)")
      ->capture_default_str();
  app.add_option("--conntrack-min", cfg.conntrack.min,
                 "Lower bound of nf_conntrack_max, whatever --conntrack-max-per-core gives")
      ->capture_default_str();
  app.add_option("--conntrack-tcp-timeout-established", ctEstablished,
                 "Idle timeout of established TCP connections (0s: leave as is)")
      ->capture_default_str();
  app.add_option("--conntrack-tcp-timeout-close-wait", ctCloseWait,
                 "Timeout of TCP connections in CLOSE_WAIT (0s: leave as is)")
      ->capture_default_str();
  app.add_flag("--conntrack-tcp-be-liberal", cfg.conntrack.tcpBeLiberal,
               "Do not mark out-of-window TCP packets INVALID (nf_conntrack_tcp_be_liberal)");
  app.add_option("--conntrack-udp-timeout", ctUdp,
                 "Timeout of unreplied UDP flows (0s: leave as is)")
      ->capture_default_str();
  app.add_option("--conntrack-udp-timeout-stream", ctUdpStream,
                 "Timeout of UDP flows with replies (0s: leave as is)")
      ->capture_default_str();
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
                 fmt::format("Port on 127.0.0.1 for /debug/state and `sliceproxy explain` (0, the "
                             "default, disables; explain asks {} unless told)",
                             kConventionalDebugPort));
  if (ext.addFlags) ext.addFlags(app);
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
    return runExplain(cfg.debugPort ? cfg.debugPort : kConventionalDebugPort, explainTarget,
                      explainFrom, explainOutput == "json");
  }

  setupLogging(cfg.verbosity);
  if (*backendsCmd) {
    return printBackends();
  }
  if (!configFile.empty()) {
    auto res = applyConfigFile(configFile, cfg, minSync, sync, [&](const std::string& f) {
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
    auto err = chooseBackend(cfg, backends::registry(), warnings);
    for (const auto& w : warnings) spdlog::warn("{}", w);
    if (!err.empty()) {
      spdlog::error("{}", err);
      return kExitUsage;
    }
    if (cfg.backend == "ebpf") {
      // kube-proxy answers NodePorts on every local address whatever interface the packet
      // came in on; the packet path matches that by default (see backends/ebpf/NODEPORT.md).
      auto& d = cfg.network.devices;
      if (d.empty()) d = {"+"};
      if (d.size() == 1 && d[0] == "none") d.clear();
    }
    if (cfg.network.sockmapShortcut && cfg.backend != "ebpf") {
      spdlog::error("--sockmap-shortcut: only the ebpf backend has it (the backend is {})",
                    cfg.backend);
      return kExitUsage;
    }
    if (cfg.network.directServerReturn && (cfg.backend != "ebpf" || cfg.network.devices.empty())) {
      spdlog::error("--enable-dsr: only the ebpf backend's packet path has it ({})",
                    cfg.backend != "ebpf" ? "the backend is " + cfg.backend : "--devices none");
      return kExitUsage;
    }
  }
  for (auto [text, target, flag] :
       {std::tuple{&minSync, &cfg.minSyncPeriod, "--min-sync-period"},
        std::tuple{&sync, &cfg.syncPeriod, "--sync-period"},
        std::tuple{&conntrackReconcile, &cfg.conntrackReconcilePeriod,
                   "--conntrack-reconcile-period"},
        std::tuple{&sourceProgress, &cfg.sourceProgressTimeout, "--source-progress-timeout"}}) {
    auto d = parseDuration(*text);
    if (!d || d->count() < 0) {
      spdlog::error("{}: \"{}\" is not a duration (examples: 500ms, 1s, 1m30s)", flag, *text);
      return kExitUsage;
    }
    *target = *d;
  }
  // Given on the command line, these win over the file (whose values are already in cfg).
  for (auto [text, target, flag] :
       {std::tuple{&ctEstablished, &cfg.conntrack.tcpEstablishedTimeout,
                   "--conntrack-tcp-timeout-established"},
        std::tuple{&ctCloseWait, &cfg.conntrack.tcpCloseWaitTimeout,
                   "--conntrack-tcp-timeout-close-wait"},
        std::tuple{&ctUdp, &cfg.conntrack.udpTimeout, "--conntrack-udp-timeout"},
        std::tuple{&ctUdpStream, &cfg.conntrack.udpStreamTimeout,
                   "--conntrack-udp-timeout-stream"}}) {
    if (app.get_option(flag)->count() == 0) continue;
    auto d = parseDuration(*text);
    if (!d || d->count() < 0) {
      spdlog::error("{}: \"{}\" is not a duration (examples: 30s, 1h)", flag, *text);
      return kExitUsage;
    }
    *target = *d;
  }
  if (auto err = buildNetworkConfig(cfg.network, cfg.clusterCIDRs, cfg.detectLocalMode,
                                    cfg.snatAddresses, cfg.nodePortAddresses, cfg.masqueradeBit);
      !err.empty()) {
    spdlog::error("{}", err);
    return kExitUsage;
  }
  if (auto err = setNodeIpOverride(cfg.network, cfg.bindAddress); !err.empty()) {
    spdlog::error("{}", err);
    return kExitUsage;
  }
  if (cfg.network.ipvsScheduler.empty()) cfg.network.ipvsScheduler = cfg.ipvs.scheduler;
  if (cfg.syncPeriod.count() == 0) {
    // kube-proxy refuses it too: the periodic full sync is what repairs a data plane changed
    // behind the proxy's back, and the retry after a failed sync.
    spdlog::error("--sync-period: must be greater than 0");
    return kExitUsage;
  }
  if (cfg.manifestMaxFileBytes == 0) {
    spdlog::error("--manifest-max-file-bytes: must be greater than 0");
    return kExitUsage;
  }
  if (auto err = validateOpsConfig(cfg); !err.empty()) {
    spdlog::error("{}", err);
    return kExitUsage;
  }
  if (!writeConfigTo.empty()) {
    std::ofstream out(writeConfigTo);
    out << renderConfig(cfg);
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
  return runDaemon(cfg, ext);
}

}  // namespace sliceproxy::proxier::cmd
