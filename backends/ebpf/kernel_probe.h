#pragma once
#include <string>

namespace sliceproxy::backends::ebpf {

// "" when this host can run the eBPF backend; otherwise what is missing.
std::string kernelSupport();

}  // namespace sliceproxy::backends::ebpf
