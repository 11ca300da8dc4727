#pragma once
// The readable part of a service port's chain names: namespace/name/port/protocol.

#include <string>

#include "proxier/core/service_port.h"

namespace sliceproxy::backends::nft {

// The service's name in a chain name lets an operator read `nft list ruleset`; callers add an
// id that keeps the name unique. Cut to 200 bytes (chain names are limited to 255).
std::string portChainTag(const proxier::ServicePortInfo& info);

}  // namespace sliceproxy::backends::nft
