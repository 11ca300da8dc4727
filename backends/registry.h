#pragma once

#include "proxier/core/backend_registry.h"

namespace sliceproxy::backends {

// Every backend this build has, the default (what an empty KubeProxyConfiguration `mode`
// selects) first. Adding a backend: its folder, one entry in registry.cpp, one line in
// tests/conformance/expectations.json.
proxier::BackendRegistry registry();

}  // namespace sliceproxy::backends
