#include "proxier/cmd/subcommands.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cctype>
#include <iostream>

#include "backends/registry.h"
#include "proxier/cmd/exit_codes.h"
#include "proxier/cmd/kube_proxy_cleanup/kube_proxy_cleanup.h"
#include "proxier/ops/explain.h"
#include "proxier/ops/http_server.h"
#include "proxier/ops/view_json.h"

namespace sliceproxy::proxier::cmd {

int runCleanup(const Config& cfg) {
  std::string error;
  auto backend = makeBackend(backends::registry(), cfg.backend, cfg.network, error);
  if (!backend) {
    spdlog::error("{}", error);
    return kExitUsage;
  }
  auto res = backend->cleanup();
  if (!res.ok) {
    spdlog::error("cleanup with backend {} failed: {}", backend->name(), res.error);
    return 1;
  }
  spdlog::info("cleanup with backend {}: removed {} kernel objects", backend->name(),
               res.operations);
  return 0;
}

int runCleanupKubeProxy(const std::vector<std::string>& excludeCIDRs, bool withoutKubeIpvs0) {
  kube_proxy_cleanup::Options opts;
  opts.ipvsWithoutKubeIpvs0 = withoutKubeIpvs0;
  for (const auto& text : excludeCIDRs) {
    auto c = Cidr::parse(text);
    if (!c) {
      spdlog::error("--ipvs-exclude-cidrs: \"{}\" is not a CIDR", text);
      return kExitUsage;
    }
    opts.ipvsExcludeCIDRs.push_back(*c);
  }
  auto report = kube_proxy_cleanup::cleanupKubeProxy(opts);
  for (const auto& r : report.removed) std::cout << "removed: " << r << "\n";
  for (const auto& f : report.found) std::cout << "checked: " << f << "\n";
  std::cout << std::flush;
  for (const auto& e : report.errors) spdlog::error("cleanup-kube-proxy: {}", e);
  if (!report.ok()) return 1;
  spdlog::info("cleanup-kube-proxy: {}", report.removed.empty()
                                             ? "nothing of kube-proxy's was left on this node"
                                             : "kube-proxy's leftovers are removed");
  return 0;
}

int printCapabilities(const Config& cfg) {
  // Declared, not probed: capabilities are printed also where this kernel cannot run the
  // backend (the answer's "kernel" part says so).
  const auto* info = findBackend(backends::registry(), cfg.backend);
  if (!info) {
    spdlog::error("--backend: unknown backend \"{}\"; this build has: {}", cfg.backend,
                  backendNames(backends::registry()));
    return kExitUsage;
  }
  std::cout << capabilitiesJson(*info) << std::endl;
  return 0;
}

int runExplain(int port, const std::string& target, const std::string& from, bool asJson) {
  std::string error, body;
  if (!parseExplainTarget(target, from, error)) {
    spdlog::error("explain: {}", error);
    return kExitUsage;
  }
  auto enc = [](const std::string& v) {
    std::string out;
    for (unsigned char c : v) {
      if (std::isalnum(c) || c == '.' || c == '-' || c == '_') {
        out += static_cast<char>(c);
      } else {
        out += fmt::format("%{:02X}", c);
      }
    }
    return out;
  };
  unsigned status =
      httpGetLoopback(static_cast<uint16_t>(port),
                      "/debug/explain?target=" + enc(target) + "&from=" + enc(from), body, error);
  if (status == 0) {
    spdlog::error(
        "explain: cannot reach the daemon on 127.0.0.1:{}: {} (its debug server is off "
        "unless started with --debug-port; give explain the same port)",
        port, error);
    return 1;
  }
  if (status != 200) {
    spdlog::error("explain: daemon answered {}: {}", status, body);
    return 1;
  }
  if (asJson) {
    std::cout << body;
  } else {
    std::cout << explainText(boost::json::parse(body).as_object());
  }
  return 0;
}

int printBackends() {
  std::cout << backendsJson(backends::registry()) << std::endl;
  return 0;
}

}  // namespace sliceproxy::proxier::cmd
