#pragma once
// One wording for a request the kernel refused, with the errno number that netlink returned
// (operators search for it).

#include <fmt/format.h>

#include <cstring>
#include <string>

namespace sliceproxy::backends::ipvs {

inline std::string kernelError(const std::string& what, int err) {
  return fmt::format("{}: {} (errno {})", what, std::strerror(err), err);
}

}  // namespace sliceproxy::backends::ipvs
