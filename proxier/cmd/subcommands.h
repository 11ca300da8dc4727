#pragma once
// The subcommands that do one thing and exit.

#include <string>
#include <vector>

#include "proxier/config/config.h"

namespace sliceproxy::proxier::cmd {

// `sliceproxy cleanup`: removes everything the chosen backend programmed.
int runCleanup(const Config& cfg);
// `sliceproxy cleanup-kube-proxy`: removes what kube-proxy left on this node.
int runCleanupKubeProxy(const std::vector<std::string>& excludeCIDRs, bool withoutKubeIpvs0);
// `sliceproxy capabilities`: the chosen backend's declared features.
int printCapabilities(const Config& cfg);
// `sliceproxy backends`: the registry.
int printBackends();
// `sliceproxy explain`: asks the running daemon on --debug-port.
int runExplain(int port, const std::string& target, const std::string& from, bool asJson);

}  // namespace sliceproxy::proxier::cmd
