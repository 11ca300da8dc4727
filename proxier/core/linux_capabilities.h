#pragma once
// The Linux capabilities a backend needs from the process that runs it, and the start-up check
// that names a missing one before anything touches the kernel (a kernel refusal later is a bare
// EPERM, often from a library that guesses at the cause).

#include <span>
#include <string>
#include <string_view>

namespace sliceproxy::proxier {

struct LinuxCapability {
  int bit;                // CAP_* number from linux/capability.h
  std::string_view name;  // "CAP_NET_ADMIN"
  std::string_view why;   // what the backend does with it, for the error message and the docs
};

using LinuxCapabilities = std::span<const LinuxCapability>;

// Whether the calling process has `bit` in its effective set (capget); false if it cannot tell.
bool hasEffectiveCapability(int bit);

// Empty when every capability in `needed` is effective; otherwise one message naming each
// missing one, what it is for, and where to grant it.
std::string missingCapabilities(std::string_view backend, LinuxCapabilities needed);

}  // namespace sliceproxy::proxier
