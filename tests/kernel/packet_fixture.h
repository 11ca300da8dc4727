#pragma once
// Hand-built Ethernet frames for BPF_PROG_TEST_RUN fixtures: IPv4/IPv6 with TCP or UDP, with
// correct checksums, and a parser that checks every checksum of what a program wrote.

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sliceproxy::testing::packet {

struct Flow {
  std::string src, dst;  // addresses, one family
  uint16_t sport = 0, dport = 0;
  uint8_t proto = IPPROTO_TCP;
};

inline bool isV6(const std::string& a) {
  return a.find(':') != std::string::npos;
}

inline uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
  return sum;
}

inline uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline void put16(uint8_t* p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v & 0xff;
}
inline uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

struct Tcp {
  uint32_t seq = 1000, ack = 0;
  uint8_t flags = 0x02;  // SYN
};

// Builds the frame; udpZeroChecksum sends IPv4 UDP without a checksum.
inline std::vector<uint8_t> build(const Flow& f, const std::string& payload = "hello", Tcp tcp = {},
                                  bool udpZeroChecksum = false) {
  const bool v6 = isV6(f.src);
  const size_t l3 = v6 ? 40 : 20, l4 = f.proto == IPPROTO_TCP ? 20 : 8;
  std::vector<uint8_t> b(14 + l3 + l4 + payload.size());
  uint8_t* p = b.data();
  const uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x01}, smac[6] = {0x02, 0, 0, 0, 0, 0x02};
  std::memcpy(p, dmac, 6);
  std::memcpy(p + 6, smac, 6);
  put16(p + 12, v6 ? 0x86dd : 0x0800);
  uint8_t* ip = p + 14;
  uint8_t src[16] = {}, dst[16] = {};
  inet_pton(v6 ? AF_INET6 : AF_INET, f.src.c_str(), src);
  inet_pton(v6 ? AF_INET6 : AF_INET, f.dst.c_str(), dst);
  const size_t alen = v6 ? 16 : 4;
  if (v6) {
    ip[0] = 0x60;
    put16(ip + 4, static_cast<uint16_t>(l4 + payload.size()));
    ip[6] = f.proto;
    ip[7] = 64;
    std::memcpy(ip + 8, src, 16);
    std::memcpy(ip + 24, dst, 16);
  } else {
    ip[0] = 0x45;
    put16(ip + 2, static_cast<uint16_t>(l3 + l4 + payload.size()));
    put16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = f.proto;
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, dst, 4);
    put16(ip + 10, fold(sum16(ip, 20)));
  }
  uint8_t* t = ip + l3;
  put16(t, f.sport);
  put16(t + 2, f.dport);
  if (f.proto == IPPROTO_TCP) {
    t[4] = tcp.seq >> 24, t[5] = tcp.seq >> 16, t[6] = tcp.seq >> 8, t[7] = tcp.seq;
    t[8] = tcp.ack >> 24, t[9] = tcp.ack >> 16, t[10] = tcp.ack >> 8, t[11] = tcp.ack;
    t[12] = 5 << 4;
    t[13] = tcp.flags;
    put16(t + 14, 65535);
  } else {
    put16(t + 4, static_cast<uint16_t>(l4 + payload.size()));
  }
  std::memcpy(t + l4, payload.data(), payload.size());
  const size_t len = l4 + payload.size();
  uint32_t s = sum16(src, alen, sum16(dst, alen)) + f.proto + static_cast<uint32_t>(len);
  uint16_t c = fold(sum16(t, len, s));
  if (f.proto == IPPROTO_UDP && c == 0) c = 0xffff;
  if (f.proto == IPPROTO_UDP && udpZeroChecksum) c = 0;
  put16(t + (f.proto == IPPROTO_TCP ? 16 : 6), c);
  return b;
}

// What a frame holds, and whether each checksum in it is right.
struct Parsed {
  bool ok = false;
  Flow flow;
  bool ipChecksumOk = true, l4ChecksumOk = false;
  uint16_t l4Checksum = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t tcpFlags = 0;
  uint8_t icmpType = 0, icmpCode = 0;
  std::vector<uint8_t> icmpQuote;  // what an ICMP error carries of the original packet
  // IPv4 options, or an IPv6 Destination Options header (its bytes, the header's own included).
  std::vector<uint8_t> ipOptions;
  std::string payload;
};

inline std::string addrStr(const uint8_t* a, bool v6) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, a, buf, sizeof(buf));
  return buf;
}

inline Parsed parse(const std::vector<uint8_t>& b) {
  Parsed r;
  if (b.size() < 14) return r;
  const uint16_t et = get16(b.data() + 12);
  const bool v6 = et == 0x86dd;
  if (!v6 && et != 0x0800) return r;
  const uint8_t* ip = b.data() + 14;
  size_t l3, total;
  const uint8_t *src, *dst;
  if (v6) {
    if (b.size() < 54) return r;
    l3 = 40;
    total = 40 + get16(ip + 4);
    r.flow.proto = ip[6];
    src = ip + 8, dst = ip + 24;
    if (r.flow.proto == 60 && b.size() >= 14 + 42u) {  // Destination Options
      const size_t len = (ip[41] + 1u) * 8;
      if (b.size() < 14 + 40 + len) return r;
      r.ipOptions.assign(ip + 40, ip + 40 + len);
      r.flow.proto = ip[40];
      l3 += len;
    }
  } else {
    if (b.size() < 34) return r;
    l3 = (ip[0] & 0xf) * 4u;
    total = get16(ip + 2);
    r.flow.proto = ip[9];
    src = ip + 12, dst = ip + 16;
    r.ipChecksumOk = fold(sum16(ip, l3)) == 0;
    r.ipOptions.assign(ip + 20, ip + l3);
  }
  if (14 + total > b.size()) return r;
  r.flow.src = addrStr(src, v6);
  r.flow.dst = addrStr(dst, v6);
  const uint8_t* t = ip + l3;
  const size_t len = total - l3;
  const size_t alen = v6 ? 16 : 4;
  if (r.flow.proto == IPPROTO_ICMP || r.flow.proto == IPPROTO_ICMPV6) {
    r.icmpType = t[0];
    r.icmpCode = t[1];
    // ICMPv6 sums the pseudo-header too; ICMP (v4) does not.
    const uint32_t pseudo =
        v6 ? sum16(src, alen, sum16(dst, alen)) + IPPROTO_ICMPV6 + static_cast<uint32_t>(len) : 0;
    r.l4ChecksumOk = fold(sum16(t, len, pseudo)) == 0;
    r.icmpQuote.assign(t + 8, t + len);
    r.ok = true;
    return r;
  }
  r.flow.sport = get16(t);
  r.flow.dport = get16(t + 2);
  size_t hl = 8;
  if (r.flow.proto == IPPROTO_TCP) {
    hl = (t[12] >> 4) * 4u;
    r.seq = static_cast<uint32_t>(t[4] << 24 | t[5] << 16 | t[6] << 8 | t[7]);
    r.ack = static_cast<uint32_t>(t[8] << 24 | t[9] << 16 | t[10] << 8 | t[11]);
    r.tcpFlags = t[13];
    r.l4Checksum = get16(t + 16);
  } else {
    r.l4Checksum = get16(t + 6);
  }
  uint32_t s = sum16(src, alen, sum16(dst, alen)) + r.flow.proto + static_cast<uint32_t>(len);
  r.l4ChecksumOk =
      fold(sum16(t, len, s)) == 0 || (r.flow.proto == IPPROTO_UDP && !v6 && r.l4Checksum == 0);
  r.payload.assign(reinterpret_cast<const char*>(t + hl), len - hl);
  r.ok = true;
  return r;
}

}  // namespace sliceproxy::testing::packet
