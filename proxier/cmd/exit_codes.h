#pragma once
// The exit codes of sliceproxy, as documented in the README.

namespace sliceproxy::proxier::cmd {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // a kernel or runtime error
inline constexpr int kExitUsage = 2;    // a bad flag, configuration file or backend choice

}  // namespace sliceproxy::proxier::cmd
