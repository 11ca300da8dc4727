#include "backends/nftables/sctp_ports.h"

namespace sliceproxy::backends::nft {

using namespace proxier;

SctpPorts::SctpPorts(const NetworkConfig& net) : nft_(net) {}

BackendResult SctpPorts::programAll(const NodeContext* node) {
  State s;
  s.node = node;
  for (const auto& [key, view] : ports_) s.ports.push_back(view);
  auto r = nft_.fullSync(s);
  programmed_ = r.ok;
  if (!r.ok) r.error = "SCTP ports (nftables): " + r.error;
  return r;
}

BackendResult SctpPorts::apply(const Diff& diff) {
  Diff part;
  part.node = diff.node;
  part.nodeChanged = diff.nodeChanged && programmed_;
  for (const auto& u : diff.upserts) {
    if (!isSctp(u.view->key())) continue;
    part.upserts.push_back(u);
    ports_[u.view->key()] = u.view;
  }
  for (const auto& d : diff.deletes) {
    if (!isSctp(d.key)) continue;
    part.deletes.push_back(d);
    ports_.erase(d.key);
  }
  if (ports_.empty()) {
    if (!programmed_) return {true, "", 0};
    programmed_ = false;
    return cleanup();
  }
  if (!programmed_) return programAll(diff.node);
  if (part.empty()) return {true, "", 0};
  auto r = nft_.apply(part);
  if (!r.ok) {
    programmed_ = false;  // the next sync rebuilds the tables
    r.error = "SCTP ports (nftables): " + r.error;
  }
  return r;
}

BackendResult SctpPorts::fullSync(const State& state) {
  ports_.clear();
  for (const ServicePortView* v : state.ports) {
    if (isSctp(v->key())) ports_[v->key()] = v;
  }
  if (!ports_.empty()) return programAll(state.node);
  // Also when this run programmed nothing: a previous run (or the nftables backend) may have.
  programmed_ = false;
  return cleanup();
}

BackendResult SctpPorts::cleanup() {
  auto r = nft_.cleanup();
  if (!r.ok) r.error = "SCTP ports (nftables): " + r.error;
  return r;
}

std::string SctpPorts::drift() {
  if (!programmed_) return "";
  auto gone = nft_.drift();
  return gone.empty() ? "" : "SCTP ports (nftables): " + gone;
}

std::vector<std::string> SctpPorts::kernelObjects(const ServicePortKey& key) const {
  return nft_.kernelObjects(key);
}

}  // namespace sliceproxy::backends::nft
