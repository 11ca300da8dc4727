#include "proxier/model/ip.h"

#include <arpa/inet.h>

#include <charconv>

namespace sliceproxy::proxier {

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; addresses are short, so a stack copy is cheap.
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf)) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddr a;
  if (text.find(':') == std::string_view::npos) {
    a.family = IpFamily::V4;
    if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) return a;
    // Old API servers stored zero-padded octets ("010.000.000.001"); kube-proxy reads them as
    // decimal (ParseIPSloppy), and so do we.
    size_t octet = 0, digits = 0;
    unsigned value = 0;
    for (char c : text) {
      if (c == '.') {
        if (digits == 0 || octet == 3) return std::nullopt;
        a.bytes[octet++] = static_cast<uint8_t>(value);
        value = 0;
        digits = 0;
      } else if (c >= '0' && c <= '9' && digits < 3) {
        value = value * 10 + static_cast<unsigned>(c - '0');
        if (value > 255) return std::nullopt;
        ++digits;
      } else {
        return std::nullopt;
      }
    }
    if (digits == 0 || octet != 3) return std::nullopt;
    a.bytes[3] = static_cast<uint8_t>(value);
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
  a.family = IpFamily::V6;
  // An IPv4-mapped IPv6 address is an IPv4 address for every purpose a proxy has.
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a.bytes.data(), kMapped, 12) == 0) {
    IpAddr v4;
    std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
    v4.family = IpFamily::V4;
    return v4;
  }
  return a;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(isV4() ? AF_INET : AF_INET6, bytes.data(), buf, sizeof(buf));
  return buf;
}

std::optional<Cidr> Cidr::parse(std::string_view text, bool strict) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto ip = IpAddr::parse(text.substr(0, slash));
  if (!ip) return std::nullopt;
  auto lenText = text.substr(slash + 1);
  unsigned len = 0;
  auto [end, ec] = std::from_chars(lenText.data(), lenText.data() + lenText.size(), len);
  if (ec != std::errc() || end != lenText.data() + lenText.size() || lenText.empty()) {
    return std::nullopt;
  }
  if (len > (ip->isV4() ? 32u : 128u)) return std::nullopt;
  Cidr c{*ip, static_cast<uint8_t>(len)};
  Cidr masked = c;
  for (size_t i = 0; i < 16; ++i) {
    int keep = static_cast<int>(len) - static_cast<int>(i * 8);
    uint8_t mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
    masked.addr.bytes[i] &= mask;
  }
  if (strict && masked.addr != c.addr) return std::nullopt;
  return masked;
}

bool Cidr::contains(const IpAddr& ip) const {
  if (ip.family != addr.family) return false;
  unsigned full = prefixLen / 8, rest = prefixLen % 8;
  if (std::memcmp(ip.bytes.data(), addr.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip.bytes[full] & mask) == (addr.bytes[full] & mask);
}

std::string Cidr::str() const {
  return addr.str() + "/" + std::to_string(prefixLen);
}

}  // namespace sliceproxy::proxier
