// bench_cp_harness: sliceproxy's control-plane side of the issue-7 harness (bench/run).
//   dump    --workload seed|wide ... [--changes K]   the workload for the peers' rule generators
//   program --workload seed|wide ... [--backend B] [--repeat K] [--count-cmd CMD]
//   churn   [--endpoints N] [--roll N] [--rate R] [--min-sync-ms MS] [--samples FILE]
//   backends                                         the kernel backends this build has
// program and churn take --cgroup-root DIR and --bpf-pin-dir DIR for the ebpf backend (the
// harness passes a cgroup and a bpf filesystem of its own; never the host's).
// program and churn move into a fresh network namespace first, so they never touch the host's
// ruleset; --count-cmd runs inside it. Each prints one JSON object.

#include <sched.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>

#include "backends/registry.h"
#include "bench/cp_churn.h"
#include "bench/cp_program.h"
#include "bench/harness_workload.h"

namespace {

using namespace sliceproxy::bench;

struct Args {
  std::string command;
  std::map<std::string, std::string> opts;
  std::string get(const std::string& k, const std::string& def) const {
    auto it = opts.find(k);
    return it == opts.end() ? def : it->second;
  }
  size_t num(const std::string& k, size_t def) const {
    auto it = opts.find(k);
    if (it == opts.end()) return def;
    try {
      return static_cast<size_t>(std::stoull(it->second));
    } catch (const std::exception&) {
      throw std::invalid_argument("--" + k + ": not a number: " + it->second);
    }
  }
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) throw std::invalid_argument("missing command (dump, program, churn, backends)");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) throw std::invalid_argument("bad argument: " + k);
    a.opts[k.substr(2)] = argv[++i];
  }
  return a;
}

HarnessWorkload workloadFrom(const Args& a) {
  return makeHarnessWorkload(a.get("workload", "seed"), a.num("endpoints", 100000),
                             a.num("services", 10000), a.num("per-service", 10));
}

sliceproxy::proxier::NetworkConfig networkFrom(const Args& a) {
  sliceproxy::proxier::NetworkConfig n = harnessNetwork();
  n.cgroupRoot = a.get("cgroup-root", n.cgroupRoot);
  n.bpfPinDir = a.get("bpf-pin-dir", n.bpfPinDir);
  return n;
}

void enterPrivateNetns() {
  if (unshare(CLONE_NEWNET) != 0) {
    throw std::runtime_error(std::string("cannot create a network namespace (need root): ") +
                             std::strerror(errno));
  }
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  try {
    Args a = parse(argc, argv);
    if (a.command == "dump") {
      dumpWorkload(workloadFrom(a), static_cast<uint32_t>(a.num("changes", 3)), stdout);
    } else if (a.command == "backends") {
      // The kernel backends this build has and this host's kernel can run.
      enterPrivateNetns();
      for (const auto& b : sliceproxy::backends::registry()) {
        if (!b.programsKernel) continue;
        // Not on this kernel (e.g. ebpf without BTF or before 5.18): left out, said why.
        if (const std::string why = b.kernelSupport ? b.kernelSupport() : ""; !why.empty()) {
          std::fprintf(stderr, "bench_cp_harness: backend %.*s left out: %s\n",
                       static_cast<int>(b.name.size()), b.name.data(), why.c_str());
          continue;
        }
        std::string error;
        if (sliceproxy::proxier::makeBackend(sliceproxy::backends::registry(), b.name,
                                             harnessNetwork(), error)) {
          std::printf("%.*s\n", static_cast<int>(b.name.size()), b.name.data());
        }
      }
    } else if (a.command == "program") {
      HarnessWorkload hw = workloadFrom(a);
      ProgramOptions o;
      o.backend = a.get("backend", "nftables");
      o.repeat = static_cast<uint32_t>(a.num("repeat", 20));
      o.countCmd = a.get("count-cmd", "");
      enterPrivateNetns();
      measureProgram(hw, o, networkFrom(a)).print();
    } else if (a.command == "churn") {
      ChurnOptions o;
      o.backend = a.get("backend", "nftables");
      o.endpoints = a.num("endpoints", 5000);
      o.roll = a.num("roll", 0);
      o.rate = static_cast<double>(a.num("rate", 200));
      o.minSync = std::chrono::milliseconds(a.num("min-sync-ms", 1000));
      o.samplesPath = a.get("samples", "");
      enterPrivateNetns();
      measureChurn(o, networkFrom(a)).print();
    } else {
      throw std::invalid_argument("unknown command " + a.command);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cp_harness: %s\n", e.what());
    return 1;
  }
  return 0;
}
