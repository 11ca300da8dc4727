#pragma once
// The backends this build knows, as one table: the factory, configuration (`--backend`, the
// KubeProxyConfiguration `mode`), `sliceproxy capabilities` and `sliceproxy backends`, conntrack
// cleanup and the tests all read it. The table lives in backends/registry.cpp; the composition
// root hands it to the rest, so nothing below backends/ links against a backend.

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "proxier/config/network_config.h"
#include "proxier/core/backend.h"
#include "proxier/core/linux_capabilities.h"

namespace sliceproxy::proxier {

// Who removes the flows a removed endpoint leaves behind.
enum class StaleFlowCleaner : uint8_t {
  None,       // the backend programs no data path (dry-run)
  Conntrack,  // the kernel's conntrack table: the netfilter data planes (nftables, IPVS)
  Backend,    // the backend's own flow state (eBPF maps and sockets)
  // Its own for TCP and UDP, conntrack's for SCTP, which it leaves to netfilter (eBPF).
  BackendSctpConntrack,
};
const char* staleFlowCleanerName(StaleFlowCleaner c);

struct BackendInfo {
  std::string_view name;     // --backend NAME
  std::string_view mode;     // the KubeProxyConfiguration `mode` that selects it; "" for none
  std::string_view summary;  // one line, for `sliceproxy backends`
  StaleFlowCleaner cleaner = StaleFlowCleaner::None;
  // False for dry-run: it owns no kernel state, so the conformance suite does not run it.
  bool programsKernel = true;
  Capabilities (*capabilities)() = nullptr;
  // Empty when this host's kernel can run the backend; otherwise the kernel feature that is
  // missing, in words an operator can act on.
  std::string (*kernelSupport)() = nullptr;
  // The Linux capabilities the daemon needs to run it, checked at start-up (empty: none).
  LinuxCapabilities linuxCapabilities;
  // Throws std::exception saying what could not be set up.
  std::unique_ptr<Backend> (*make)(const NetworkConfig&) = nullptr;
};

using BackendRegistry = std::span<const BackendInfo>;

const BackendInfo* findBackend(BackendRegistry registry, std::string_view name);
const BackendInfo* findBackendByMode(BackendRegistry registry, std::string_view mode);
// "nftables, dry-run": for messages that list the choices.
std::string backendNames(BackendRegistry registry);

// Builds the named backend; null with `error` set (naming the backend and, for one this kernel
// cannot run, the missing feature) when it is unknown, unsupported here or fails to start.
std::unique_ptr<Backend> makeBackend(BackendRegistry registry, std::string_view name,
                                     const NetworkConfig& net, std::string& error);

}  // namespace sliceproxy::proxier
