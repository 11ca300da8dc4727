#pragma once
// sliceproxy's control-plane row of the issue-7 harness: one workload through the real
// ChangeTracker -> Proxier -> backend, in the caller's network namespace.

#include <string>

#include "bench/harness_stats.h"
#include "bench/harness_workload.h"
#include "proxier/config/network_config.h"

namespace sliceproxy::bench {

struct ProgramOptions {
  std::string backend = "nftables";
  uint32_t repeat = 20;  // one-endpoint changes and added services timed
  std::string countCmd;  // prints the namespace's kernel objects as JSON; run after cold
};

// Cold program, one endpoint change, one service added, CPU, memory, kernel objects.
// Throws std::runtime_error naming the step when the backend fails.
JsonObject measureProgram(const HarnessWorkload& hw, const ProgramOptions& o,
                          const proxier::NetworkConfig& net);

// Runs `cmd` and returns its standard output ("" when it failed).
std::string runCapture(const std::string& cmd);

proxier::NetworkConfig harnessNetwork();

}  // namespace sliceproxy::bench
