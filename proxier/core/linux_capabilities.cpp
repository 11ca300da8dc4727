#include "proxier/core/linux_capabilities.h"

#include <fmt/format.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sliceproxy::proxier {

bool hasEffectiveCapability(int bit) {
  // capget directly: glibc has no wrapper, and libcap would be a dependency for one call.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (bit < 0 || bit >= 32 * _LINUX_CAPABILITY_U32S_3) return false;
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[bit / 32].effective >> (bit % 32)) & 1u;
}

std::string missingCapabilities(std::string_view backend, LinuxCapabilities needed) {
  std::string missing, names;
  for (const auto& cap : needed) {
    if (hasEffectiveCapability(cap.bit)) continue;
    missing += fmt::format("{}{} ({})", missing.empty() ? "" : ", ", cap.name, cap.why);
    names += fmt::format("{}{}", names.empty() ? "" : " ", cap.name);
  }
  if (missing.empty()) return "";
  return fmt::format(
      "--backend {} needs capabilities this process does not have: {}; grant {} (systemd: "
      "CapabilityBoundingSet=, Kubernetes: securityContext.capabilities.add; `sliceproxy "
      "backends` lists each backend's set)",
      backend, missing, names);
}

}  // namespace sliceproxy::proxier
