#pragma once
// Which backend runs: --backend or the config file's sliceproxy.backend, else the file's
// KubeProxyConfiguration `mode`, else the registry's default (its first entry).

#include <string>
#include <vector>

#include "proxier/config/config.h"
#include "proxier/core/backend_registry.h"

namespace sliceproxy::proxier {

// Sets cfg.backend and cfg.mode. Returns "" or one error naming the flag, or the file and
// field; a mode served by another backend than its name says adds a warning.
std::string chooseBackend(Config& cfg, BackendRegistry registry,
                          std::vector<std::string>& warnings);

}  // namespace sliceproxy::proxier
