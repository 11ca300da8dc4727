#pragma once

#include <string>

namespace sliceproxy::backends::nft {

// Empty when the kernel answers nf_tables requests; otherwise what is missing. Asks for the
// ruleset generation, which needs no permission beyond CAP_NET_ADMIN and changes nothing.
std::string kernelSupport();

}  // namespace sliceproxy::backends::nft
