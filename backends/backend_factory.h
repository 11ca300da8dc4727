#pragma once

#include <memory>
#include <string>
#include <vector>

#include "proxier/backend.h"

namespace sliceproxy::backends {

std::vector<std::string> backendNames();
// Null, with `error` set, for an unknown or unavailable backend.
std::unique_ptr<proxier::Backend> makeBackend(const std::string& name, std::string& error);

}  // namespace sliceproxy::backends
