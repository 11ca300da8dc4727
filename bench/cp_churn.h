#pragma once
// The churn row of the issue-7 harness: a service of N endpoints rolled one endpoint at a time
// (terminating -> removed -> a new ready endpoint, each step one EndpointSlice update) at a fixed
// event rate, through the real tracker, SyncRunner (min-sync-period, burst 2), proxier and
// backend. Measures each event's time until the sync that carried it finished programming.

#include <chrono>
#include <string>

#include "bench/harness_stats.h"
#include "proxier/config/network_config.h"

namespace sliceproxy::bench {

struct ChurnOptions {
  std::string backend = "nftables";
  size_t endpoints = 5000;  // size of the rolled service
  size_t roll = 0;          // endpoints replaced; 0 = all of them
  double rate = 200;        // slice events per second
  std::chrono::milliseconds minSync{1000};
  std::string samplesPath;  // each event's latency in ms, one per line
};

JsonObject measureChurn(const ChurnOptions& o, const proxier::NetworkConfig& net);

}  // namespace sliceproxy::bench
