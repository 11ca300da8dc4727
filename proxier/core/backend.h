#pragma once
// The one interface every data plane implements. Backends translate the proxier's decisions into
// kernel objects; they never decide which endpoints serve which traffic.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxier/core/diff.h"
#include "proxier/core/flow_index.h"

namespace sliceproxy::proxier {

// Features a backend may lack. The conformance suite expects a backend's declared answer for
// each instead of skipping.
enum class Feature : uint8_t {
  ClusterIP,
  NodePort,
  LoadBalancerVIP,
  ExternalIPs,
  ExternalTrafficPolicyLocal,
  InternalTrafficPolicyLocal,
  SessionAffinity,
  LoadBalancerSourceRanges,
  IPv6,
  SCTP,
  Hairpin,
};

const char* featureName(Feature f);

struct Capabilities {
  std::vector<Feature> supported;
  bool supports(Feature f) const;
};

struct BackendResult {
  bool ok = true;
  std::string error;        // what was being programmed and what the kernel said
  uint64_t operations = 0;  // kernel objects added, changed or removed
  // The change succeeded, but the backend's layout has outgrown the choices it made at the last
  // full sync (how many tables to spread services over): the next sync should be full.
  bool wantsFullSync = false;
  // Nothing usable was programmed: this change does not fit the layout of the last full sync
  // (a map sized then would overflow). The proxier runs a full sync at once instead.
  bool needsFullSyncNow = false;

  static BackendResult failure(std::string why) { return {false, std::move(why), 0}; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Capabilities capabilities() const = 0;
  // Applies an incremental change on top of what the last successful call programmed.
  virtual BackendResult apply(const Diff& diff) = 0;
  // Makes the kernel match this state exactly, atomically replacing whatever is there (including
  // what a previous run left) without a window where existing services stop working.
  virtual BackendResult fullSync(const State& state) = 0;
  // Removes everything this backend owns.
  virtual BackendResult cleanup() = 0;
  // Names of the kernel objects that carry this service port (chains, maps, map keys), for
  // `sliceproxy explain`; empty when the backend cannot say. Called under the proxier's lock.
  virtual std::vector<std::string> kernelObjects(const ServicePortKey&) const { return {}; }
  // The flows this backend records as it translates them, for stale-flow cleanup; null when it
  // records none. Safe to use from another thread than the one syncing.
  virtual std::shared_ptr<FlowIndex> flowIndex() { return nullptr; }
  // Whether what the last successful sync programmed is still in the kernel: empty when it is,
  // else what is gone (another program removed it: `nft flush ruleset`, `ipvsadm -C`). Cheap (a
  // listing of top-level objects, not of their contents): the proxier asks whenever a sync finds
  // nothing to change, at least every --sync-period, and repairs with a full sync at once.
  virtual std::string drift() { return {}; }
};

}  // namespace sliceproxy::proxier
