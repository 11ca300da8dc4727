#pragma once
// The daemon's settings, named after kube-proxy's flags where one exists.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "proxier/config/network_config.h"

namespace sliceproxy::proxier {

// KubeProxyConfiguration's conntrack and ipvs blocks, kept for the components that use them.
struct ConntrackSettings {
  int32_t maxPerCore = 32768, min = 131072;
  std::chrono::nanoseconds tcpEstablishedTimeout = std::chrono::hours(24);
  std::chrono::nanoseconds tcpCloseWaitTimeout = std::chrono::hours(1);
  bool tcpBeLiberal = false;
  std::chrono::nanoseconds udpTimeout{0}, udpStreamTimeout{0};
};
struct IpvsSettings {
  std::string scheduler;
  std::vector<std::string> excludeCIDRs;
  bool strictARP = false;
  std::chrono::nanoseconds tcpTimeout{0}, tcpFinTimeout{0}, udpTimeout{0};
};

// The port `sliceproxy explain` asks when not told (--debug-port), and the one the packaged
// configurations turn the debug server on with.
inline constexpr int kConventionalDebugPort = 10260;

struct Config {
  std::string backend = "nftables";
  // The KubeProxyConfiguration `mode` as written ("" when absent) and the file it came from;
  // chooseBackend() resolves it against the backend registry and then holds the chosen
  // backend's mode here. backendNamed: --backend or sliceproxy.backend named the backend.
  std::string mode, modeOrigin;
  bool backendNamed = false;
  std::string sourceDir;  // --source-dir: a manifest directory instead of the API
  uint64_t manifestMaxFileBytes = 64ull << 20;  // --manifest-max-file-bytes
  std::string kubeconfig;                       // --kubeconfig
  std::string master;                           // --master
  std::string hostnameOverride;                 // --hostname-override: this node's name
  std::chrono::nanoseconds minSyncPeriod = std::chrono::seconds(1);
  std::chrono::nanoseconds syncPeriod = std::chrono::seconds(30);
  // --source-progress-timeout: /healthz fails while the source has made no progress this long.
  std::chrono::nanoseconds sourceProgressTimeout = std::chrono::minutes(2);
  std::string serviceProxyName;
  int verbosity = 0;
  NetworkConfig network;  // validated from the flags below
  std::vector<std::string> clusterCIDRs, snatAddresses, nodePortAddresses;
  std::string detectLocalMode;
  int masqueradeBit = 14;
  // Operating it (health, metrics, debug): host:port, "" disables.
  std::string healthzBindAddress = "0.0.0.0:10256";
  std::string metricsBindAddress = "127.0.0.1:10249";
  // /debug/state and /debug/explain, on 127.0.0.1 only. Off unless asked for: they show the
  // node's whole service state to any local process.
  int debugPort = 0;
  // Stale UDP/SCTP flow cleanup after each sync (conntrack/), and its periodic sweep (0: off).
  bool conntrackCleanup = true;                          // --conntrack-cleanup
  std::chrono::nanoseconds conntrackReconcilePeriod{0};  // --conntrack-reconcile-period
  // From --config (KubeProxyConfiguration) only.
  std::string bindAddress = "0.0.0.0";
  ConntrackSettings conntrack;
  IpvsSettings ipvs;
};

// --hostname-override, else $NODE_NAME (set from the downward API in the DaemonSet), else the
// host name; lowercased as kube-proxy does.
std::string resolveNodeName(const Config& cfg);

}  // namespace sliceproxy::proxier
