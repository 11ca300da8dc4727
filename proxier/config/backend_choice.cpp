#include "proxier/config/backend_choice.h"

#include <fmt/format.h>

namespace sliceproxy::proxier {

namespace {

std::string modeList(BackendRegistry registry) {
  std::string out;
  for (const auto& b : registry) {
    if (b.mode.empty()) continue;
    if (!out.empty()) out += ", ";
    out += b.mode;
  }
  if (findBackendByMode(registry, "nftables")) out += ", iptables (served by nftables)";
  return out;
}

}  // namespace

std::string chooseBackend(Config& cfg, BackendRegistry registry,
                          std::vector<std::string>& warnings) {
  if (registry.empty()) return "this build has no backend";
  const BackendInfo* chosen = nullptr;
  if (!cfg.mode.empty()) {
    // kube-proxy's iptables mode has no backend of its own: its users migrate to nftables,
    // which implements the same semantics.
    const bool iptables = cfg.mode == "iptables";
    const BackendInfo* byMode = findBackendByMode(registry, iptables ? "nftables" : cfg.mode);
    if (!byMode) {
      return fmt::format("{}: mode: \"{}\" is not a proxy mode this build serves ({})",
                         cfg.modeOrigin, cfg.mode, modeList(registry));
    }
    if (iptables) {
      warnings.push_back(cfg.modeOrigin + ": mode: iptables is served by the nftables backend");
    }
    if (!cfg.backendNamed) chosen = byMode;
  } else if (!cfg.backendNamed) {
    chosen = &registry.front();
  }
  if (!chosen) chosen = findBackend(registry, cfg.backend);
  if (!chosen) {
    return fmt::format("--backend: unknown backend \"{}\"; this build has: {}", cfg.backend,
                       backendNames(registry));
  }
  cfg.backend = std::string(chosen->name);
  cfg.mode = std::string(chosen->mode.empty() ? registry.front().mode : chosen->mode);
  return "";
}

}  // namespace sliceproxy::proxier
