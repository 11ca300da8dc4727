#pragma once
// The daemon's settings, named after kube-proxy's flags where one exists.

#include <chrono>
#include <string>
#include <vector>

#include "proxier/network_config.h"

namespace sliceproxy::proxier {

struct Config {
  std::string backend = "nftables";
  std::string sourceDir;         // --source-dir: a manifest directory instead of the API
  std::string kubeconfig;        // --kubeconfig
  std::string master;            // --master
  std::string hostnameOverride;  // --hostname-override: this node's name
  std::chrono::nanoseconds minSyncPeriod = std::chrono::seconds(1);
  std::chrono::nanoseconds syncPeriod = std::chrono::seconds(30);
  std::string serviceProxyName;
  int verbosity = 0;
  NetworkConfig network;  // validated from the flags below
  std::vector<std::string> clusterCIDRs, snatAddresses, nodePortAddresses;
  std::string detectLocalMode;
  int masqueradeBit = 14;
};

// --hostname-override, else $NODE_NAME (set from the downward API in the DaemonSet), else the
// host name; lowercased as kube-proxy does.
std::string resolveNodeName(const Config& cfg);

}  // namespace sliceproxy::proxier
