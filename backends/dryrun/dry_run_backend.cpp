#include "backends/dryrun/dry_run_backend.h"

#include "proxier/ops/view_json.h"

namespace sliceproxy::backends {

namespace json = boost::json;
using namespace proxier;

Capabilities DryRunBackend::supported() {
  // It programs nothing, so it can "do" everything; the conformance suite never runs it.
  return Capabilities{{Feature::ClusterIP, Feature::NodePort, Feature::LoadBalancerVIP,
                       Feature::ExternalIPs, Feature::ExternalTrafficPolicyLocal,
                       Feature::InternalTrafficPolicyLocal, Feature::SessionAffinity,
                       Feature::LoadBalancerSourceRanges, Feature::IPv6, Feature::SCTP,
                       Feature::Hairpin}};
}

BackendResult DryRunBackend::apply(const Diff& diff) {
  std::lock_guard lock(mu_);
  uint64_t ops = 0;
  if (diff.nodeChanged && diff.node) {
    out_ << json::serialize(json::object{{"op", "node"}, {"node", nodeToJson(*diff.node)}}) << '\n';
  }
  for (const auto& d : diff.deletes) {
    out_ << json::serialize(deleteToJson(d)) << '\n';
    ++ops;
  }
  for (const auto& u : diff.upserts) {
    out_ << json::serialize(upsertToJson(u)) << '\n';
    ops += 1 + u.endpoints.size();
  }
  out_.flush();
  return {true, "", ops};
}

BackendResult DryRunBackend::fullSync(const State& state) {
  std::lock_guard lock(mu_);
  json::object head{{"op", "full-sync"}, {"servicePorts", state.ports.size()}};
  if (state.node) head["node"] = nodeToJson(*state.node);
  out_ << json::serialize(head) << '\n';
  uint64_t ops = 0;
  for (const auto* v : state.ports) {
    json::object o{{"op", "program"}};
    for (auto& kv : viewToJson(*v)) o.insert(std::move(kv));
    out_ << json::serialize(o) << '\n';
    ops += 1 + v->endpointCount();
  }
  out_.flush();
  return {true, "", ops};
}

BackendResult DryRunBackend::cleanup() {
  return {};
}

}  // namespace sliceproxy::backends
