#pragma once
// Helpers for the conntrack tests: build flows, put them in this namespace's conntrack table,
// read the table back.

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "conntrack/ctnetlink.h"

namespace sliceproxy::testing::ct {

using conntrack::Flow;

inline std::string run(const std::string& cmd) {
  std::array<char, 4096> buf;
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen((cmd + " 2>&1").c_str(), "r"), pclose);
  if (!p) return "popen failed";
  while (fgets(buf.data(), buf.size(), p.get())) out += buf.data();
  return out;
}

inline proxier::IpAddr addr(std::string_view s) {
  return *proxier::IpAddr::parse(s);
}

// A client's flow to a service frontend, DNATed to an endpoint.
inline Flow natFlow(std::string_view client, uint16_t cport, std::string_view vip, uint16_t vport,
                    std::string_view ep, uint16_t eport, uint8_t proto = IPPROTO_UDP) {
  Flow f;
  f.proto = proto;
  f.orig = {addr(client), addr(vip), cport, vport};
  f.family = f.orig.src.family;
  f.reply = {addr(ep), addr(client), eport, cport};
  return f;
}

// A flow nothing translated.
inline Flow plainFlow(std::string_view client, uint16_t cport, std::string_view dst, uint16_t dport,
                      uint8_t proto = IPPROTO_UDP) {
  return natFlow(client, cport, dst, dport, dst, dport, proto);
}

inline std::unique_ptr<conntrack::CtSocket> socket() {
  std::string error;
  auto s = conntrack::CtSocket::open(error);
  EXPECT_TRUE(s) << error;
  return s;
}

// Inserts the flows; returns how many the kernel accepted.
inline size_t insert(const std::vector<Flow>& flows, uint32_t timeout = 600) {
  auto s = socket();
  size_t ok = 0;
  std::vector<int> res;
  for (size_t i = 0; i < flows.size(); i += conntrack::CtSocket::kMaxBatch) {
    std::vector<const Flow*> batch;
    for (size_t j = i; j < flows.size() && j < i + conntrack::CtSocket::kMaxBatch; ++j) {
      batch.push_back(&flows[j]);
    }
    int err = s->insertFlows(batch, timeout, res);
    EXPECT_EQ(err, 0) << std::strerror(err);
    for (size_t j = 0; j < res.size(); ++j) {
      if (res[j] == 0) {
        ++ok;
      } else {
        ADD_FAILURE() << "cannot insert " << batch[j]->str() << ": " << std::strerror(res[j]);
      }
    }
  }
  return ok;
}

// Every flow in this namespace's table, both families.
inline std::vector<Flow> table() {
  auto s = socket();
  std::vector<Flow> out;
  for (auto fam : {proxier::IpFamily::V4, proxier::IpFamily::V6}) {
    conntrack::DumpFilter f;
    f.family = fam;
    int err = s->dump(f, [&](std::span<const Flow> flows) {
      for (const auto& fl : flows) {
        if (fl.family == fam) out.push_back(fl);
      }
    });
    EXPECT_EQ(err, 0) << std::strerror(err);
  }
  return out;
}

inline bool present(const std::vector<Flow>& t, const Flow& f) {
  for (const auto& x : t) {
    if (x.proto == f.proto && x.orig == f.orig && x.reply == f.reply) return true;
  }
  return false;
}

inline void flush() {
  run("conntrack -F");
  run("conntrack -F -f ipv6");
}

}  // namespace sliceproxy::testing::ct
