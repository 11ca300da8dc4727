#include "proxier/core/backend_registry.h"

#include <fmt/format.h>

namespace sliceproxy::proxier {

const char* staleFlowCleanerName(StaleFlowCleaner c) {
  switch (c) {
    case StaleFlowCleaner::None:
      return "none";
    case StaleFlowCleaner::Conntrack:
      return "conntrack";
    case StaleFlowCleaner::Backend:
      return "backend";
    case StaleFlowCleaner::BackendSctpConntrack:
      return "backend (SCTP: conntrack)";
  }
  return "?";
}

const BackendInfo* findBackend(BackendRegistry registry, std::string_view name) {
  for (const auto& b : registry) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

const BackendInfo* findBackendByMode(BackendRegistry registry, std::string_view mode) {
  if (mode.empty()) return nullptr;
  for (const auto& b : registry) {
    if (b.mode == mode) return &b;
  }
  return nullptr;
}

std::string backendNames(BackendRegistry registry) {
  std::string out;
  for (const auto& b : registry) {
    if (!out.empty()) out += ", ";
    out += b.name;
  }
  return out;
}

std::unique_ptr<Backend> makeBackend(BackendRegistry registry, std::string_view name,
                                     const NetworkConfig& net, std::string& error) {
  const BackendInfo* info = findBackend(registry, name);
  if (!info) {
    error = fmt::format("--backend: unknown backend \"{}\"; this build has: {}", name,
                        backendNames(registry));
    return nullptr;
  }
  if (std::string missing = info->kernelSupport(); !missing.empty()) {
    error = fmt::format("--backend {}: this kernel cannot run it: {}", name, missing);
    return nullptr;
  }
  try {
    return info->make(net);
  } catch (const std::exception& e) {
    error = fmt::format("{} backend: {}", name, e.what());
    return nullptr;
  }
}

}  // namespace sliceproxy::proxier
