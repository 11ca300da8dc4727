#pragma once
// Binary IP addresses and prefixes. Every address string is parsed exactly once, when the object
// carrying it arrives; everything downstream compares and hashes these 17-byte values.

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace sliceproxy::proxier {

enum class IpFamily : uint8_t { V4 = 4, V6 = 6 };

inline const char* familyName(IpFamily f) {
  return f == IpFamily::V4 ? "IPv4" : "IPv6";
}

struct IpAddr {
  // IPv4 uses the first 4 bytes; the rest stay zero so comparison and hashing need no branch.
  std::array<uint8_t, 16> bytes{};
  IpFamily family = IpFamily::V4;

  static std::optional<IpAddr> parse(std::string_view text);
  std::string str() const;
  bool isV4() const { return family == IpFamily::V4; }
  size_t size() const { return isV4() ? 4 : 16; }
  bool isLoopback() const {
    static constexpr std::array<uint8_t, 16> kV6Loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                         0, 0, 0, 0, 0, 0, 0, 1};
    return isV4() ? bytes[0] == 127 : bytes == kV6Loopback;
  }
  bool isUnspecified() const { return bytes == std::array<uint8_t, 16>{}; }

  friend bool operator==(const IpAddr&, const IpAddr&) = default;
  friend auto operator<=>(const IpAddr& a, const IpAddr& b) {
    if (a.family != b.family) return a.family <=> b.family;
    int c = std::memcmp(a.bytes.data(), b.bytes.data(), 16);
    return c <=> 0;
  }
};

struct Cidr {
  IpAddr addr;
  uint8_t prefixLen = 0;

  // Accepts "a.b.c.d/n" and "x::/n"; host bits must be zero only if strict is set (the API
  // server accepts loadBalancerSourceRanges with host bits, and so must we).
  static std::optional<Cidr> parse(std::string_view text, bool strict = false);
  bool contains(const IpAddr& ip) const;
  std::string str() const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

struct IpAddrHash {
  size_t operator()(const IpAddr& a) const noexcept {
    uint64_t lo, hi;
    std::memcpy(&lo, a.bytes.data(), 8);
    std::memcpy(&hi, a.bytes.data() + 8, 8);
    uint64_t h =
        lo * 0x9E3779B97F4A7C15ULL ^ (hi + static_cast<uint64_t>(a.family)) * 0xC2B2AE3D27D4EB4FULL;
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

}  // namespace sliceproxy::proxier
