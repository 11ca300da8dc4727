#pragma once
// Maglev consistent hashing (Eisenbud et al., NSDI 2016) for traffic from outside the node: a
// lookup table of a prime size M in which every backend owns M/N entries (give or take one), and
// a flow's entry is its 5-tuple hash modulo M. The table is a pure function of the backend SET
// and the table size: the order in which endpoints arrived, the node and the run play no part,
// so every node picks the same backend for the same flow and an ECMP change in front of the
// nodes keeps connections on their backend. Removing one of N backends moves about 1/N of the
// entries (those it owned, plus a small margin).

#include <cstdint>
#include <string>
#include <vector>

#include "proxier/core/service_port_view.h"

namespace sliceproxy::backends::ebpf {

// Cilium's default too: a prime well above 100 x backends up to 163 backends.
inline constexpr uint32_t kMaglevDefaultTableSize = 16381;
// The largest prime below 2^24: bigger services get this size (and a coarser balance).
inline constexpr uint32_t kMaglevMaxTableSize = 16777213;
// Smallest accepted --maglev-table-size.
inline constexpr uint32_t kMaglevMinTableSize = 251;

bool isPrime(uint64_t n);

// "" when `size` is an acceptable --maglev-table-size, otherwise why not.
std::string maglevTableSizeError(uint64_t size);

// The table size for `backends` backends: `configured` while it is at least 100 x backends,
// otherwise the smallest prime at or above configured x 2^k that is (up to the maximum). A step
// up remaps everything once; the steps are the same on every node.
uint32_t maglevTableSizeFor(uint32_t configured, size_t backends);

// Fills a table of `size` entries (a prime) with indices into `backends` after sorting and
// deduplicating them in place. An empty backend list gives an empty table.
std::vector<uint32_t> maglevTable(std::vector<proxier::EndpointKey>& backends, uint32_t size);

// The 64-bit hash the permutations come from: seeded murmur-style mixing of the
// endpoint's family, address and port, identical on every platform.
uint64_t maglevHash(const proxier::EndpointKey& backend, uint64_t seed);

}  // namespace sliceproxy::backends::ebpf
