#pragma once
// Test hook: kernel faults injected on purpose at a few named points of the netlink paths, so
// that tests can watch the daemon handle them against the real kernel. Only sliceproxy-testing
// (--testing-fault-file) and the kernel test binaries arm faults; the sliceproxy binary never
// does, and an unarmed point costs one relaxed load and a branch.
//
// A fault is written "POINT:ERRNO[:COUNT]" (COUNT: a number, "once" (the default) or
// "always"), e.g. "nft-commit:ENOBUFS:once", "conntrack-delete:EPERM:3". Points:
//   nft-commit        an nftables sync's transaction ends with a message the kernel refuses,
//                     after it has processed every other one, so it rolls the whole batch
//                     back; the failure is reported as ERRNO
//   nft-ack-overrun   an nftables sync's transaction asks an acknowledgement for every message
//                     and its socket's receive buffer is shrunk to the minimum: the kernel
//                     commits the batch and overruns the socket (a real ENOBUFS on receive);
//                     ERRNO is ignored
//   conntrack-delete  one conntrack delete (one flow) is refused with ERRNO without reaching
//                     the kernel

#include <atomic>
#include <string>

namespace sliceproxy::proxier {

enum class FaultPoint : unsigned { NftCommit, NftAckOverrun, ConntrackDelete, kCount };

namespace faults_detail {
extern std::atomic<bool> armed;
int fireArmed(FaultPoint p);
}  // namespace faults_detail

// True when a test armed some fault: the single branch a call site pays.
inline bool faultsArmed() {
  return faults_detail::armed.load(std::memory_order_relaxed);
}

// The errno to inject at `p` now (consuming one of its count), or 0.
inline int injectedFault(FaultPoint p) {
  if (!faults_detail::armed.load(std::memory_order_relaxed)) [[likely]]
    return 0;
  return faults_detail::fireArmed(p);
}

// Replaces every armed fault by those of `spec` (one per line or comma-separated; empty:
// none). Returns "" or what is wrong with the spec (nothing is armed then).
std::string armFaults(const std::string& spec);
// "nft-commit ENOBUFS x1, ..." or "none", for logs.
std::string describeArmedFaults();

}  // namespace sliceproxy::proxier
