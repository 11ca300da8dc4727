#pragma once

#include <memory>
#include <string>
#include <vector>

#include "proxier/core/backend.h"
#include "proxier/config/network_config.h"

namespace sliceproxy::backends {

std::vector<std::string> backendNames();
// Null, with `error` set, for an unknown or unavailable backend.
std::unique_ptr<proxier::Backend> makeBackend(const std::string& name,
                                              const proxier::NetworkConfig& net,
                                              std::string& error);

}  // namespace sliceproxy::backends
