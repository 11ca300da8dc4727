#pragma once
// The exit codes of sliceproxy, as documented in the README.

namespace sliceproxy::proxier::cmd {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // a kernel or runtime error
inline constexpr int kExitUsage = 2;    // a bad flag, configuration file or backend choice
// A health, metrics or debug address still could not be bound after 10 s of retries (another
// process has it); the one error line names the flag and the address.
inline constexpr int kExitListen = 3;

}  // namespace sliceproxy::proxier::cmd
