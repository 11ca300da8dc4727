#include "backends/ebpf/maglev.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace sliceproxy::backends::ebpf {
namespace {

// Fixed seeds: changing them changes every node's tables, so they are part of the wire contract
// between nodes running different sliceproxy versions.
constexpr uint64_t kOffsetSeed = 0x2d358dccaa6c78a5ULL;
constexpr uint64_t kSkipSeed = 0x8bb84b93962eacc9ULL;

uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// Little-endian load regardless of the host, so big-endian nodes agree with the rest.
uint64_t load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

bool isPrime(uint64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

std::string maglevTableSizeError(uint64_t size) {
  if (size < kMaglevMinTableSize || size > kMaglevMaxTableSize) {
    return fmt::format("--maglev-table-size {}: must be a prime between {} and {}", size,
                       kMaglevMinTableSize, kMaglevMaxTableSize);
  }
  if (!isPrime(size)) {
    return fmt::format("--maglev-table-size {}: not a prime (Maglev permutations need one)", size);
  }
  return "";
}

uint32_t maglevTableSizeFor(uint32_t configured, size_t backends) {
  const uint64_t want = static_cast<uint64_t>(backends) * 100;
  uint64_t m = configured;
  if (m >= want) return configured;
  while (m < want && m < kMaglevMaxTableSize) m *= 2;
  if (m >= kMaglevMaxTableSize) return kMaglevMaxTableSize;
  while (!isPrime(m)) ++m;
  return static_cast<uint32_t>(m);
}

uint64_t maglevHash(const proxier::EndpointKey& backend, uint64_t seed) {
  const uint8_t* a = backend.ip.bytes.data();
  uint64_t h = seed ^ (static_cast<uint64_t>(backend.ip.family) << 16 | backend.port);
  h = fmix64(h ^ load64(a) * 0x87c37b91114253d5ULL);
  h = fmix64(h ^ load64(a + 8) * 0x4cf5ad432745937fULL);
  return h;
}

std::vector<uint32_t> maglevTable(std::vector<proxier::EndpointKey>& backends, uint32_t size) {
  std::sort(backends.begin(), backends.end());
  backends.erase(std::unique(backends.begin(), backends.end()), backends.end());
  const size_t n = backends.size();
  if (n == 0 || size == 0) return {};
  // Backend i visits entries offset, offset + skip, offset + 2 skip, ... (mod size): a
  // permutation of the table since size is prime and 0 < skip < size.
  std::vector<uint32_t> pos(n), skip(n);
  for (size_t i = 0; i < n; ++i) {
    pos[i] = static_cast<uint32_t>(maglevHash(backends[i], kOffsetSeed) % size);
    skip[i] = static_cast<uint32_t>(maglevHash(backends[i], kSkipSeed) % (size - 1) + 1);
  }
  constexpr uint32_t kEmpty = UINT32_MAX;
  std::vector<uint32_t> table(size, kEmpty);
  // Round robin: each backend in turn takes the next free entry of its permutation, so every
  // backend ends with floor(size/n) or ceil(size/n) entries.
  uint32_t filled = 0;
  for (;;) {
    for (size_t i = 0; i < n; ++i) {
      uint32_t c = pos[i];
      while (table[c] != kEmpty) {
        c += skip[i];
        if (c >= size) c -= size;
      }
      table[c] = static_cast<uint32_t>(i);
      c += skip[i];
      if (c >= size) c -= size;
      pos[i] = c;
      if (++filled == size) return table;
    }
  }
}

}  // namespace sliceproxy::backends::ebpf
