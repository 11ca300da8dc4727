#pragma once
// How the loaders report a failed bpf()/libbpf call: libbpf returns -errno, the raw syscall
// wrappers errno; both end up as one exception naming what was being set up.

#include <fmt/format.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace sliceproxy::backends::ebpf {

[[noreturn]] inline void throwBpfError(const std::string& what, int err) {
  throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(err < 0 ? -err : err)));
}

}  // namespace sliceproxy::backends::ebpf
