// The packet path's cost per packet (issue 16): np_xdp and np_ingress (tc) on the same frames
// through BPF_PROG_TEST_RUN, one run per call, the kernel's own in-program time (`duration`, so
// no syscall is counted), next to a program that returns XDP_PASS and nothing else (the floor
// of the measurement). New flows (a different client port each: connection tracking insert,
// Maglev lookup) and established ones (one tracking lookup, 250 runs of one buffer), at 10 and
// 10,000 services. Needs root: it runs in its own network namespace, with a veth, a route and a
// permanent neighbour so that XDP finds a next hop and redirects (the tc program, whose test
// run has no ingress interface, translates and passes). Medians of `rounds` x `runs` samples.
// Usage: bench_nodeport_pps [runs=20000] [rounds=5]

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backends/ebpf/maglev.h"
#include "backends/ebpf/nodeport_loader.h"
#include "tests/kernel/packet_fixture.h"

namespace {

using sliceproxy::backends::ebpf::kMaglevDefaultTableSize;
using sliceproxy::backends::ebpf::maglevTable;
using sliceproxy::backends::ebpf::maglevTableSizeFor;
using sliceproxy::backends::ebpf::NodePortPrograms;
namespace packet = sliceproxy::testing::packet;

// `repeat` runs of prog on frame (the same buffer: what a run writes, the next one reads); the
// kernel's mean time per run in ns (0 on failure).
uint32_t runOnce(int prog, const std::vector<uint8_t>& frame, int ifindex, bool xdp,
                 int repeat = 1) {
  std::vector<uint8_t> out(1600);
  xdp_md md{};
  md.data_end = static_cast<uint32_t>(frame.size());
  md.ingress_ifindex = static_cast<uint32_t>(ifindex);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()),
              .data_size_out = static_cast<uint32_t>(out.size()), .repeat = repeat);
  if (xdp) {
    opts.ctx_in = &md;
    opts.ctx_size_in = sizeof(md);
  }
  if (bpf_prog_test_run_opts(prog, &opts) != 0) return 0;
  return opts.duration;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int passProgram() {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = XDP_PASS
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = XDP_PASS;
  insns[1].code = BPF_JMP | BPF_EXIT;
  return bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_pass", "GPL", insns, 2, nullptr);
}

// services frontends on 192.168.0.10, ports 20000.., each with 10 backends in 10.245.0.0/16.
void writeServices(NodePortPrograms& progs, int services) {
  uint32_t nextId = 1;
  for (int s = 0; s < services; ++s) {
    std::vector<sliceproxy::proxier::EndpointKey> backends;
    for (int b = 0; b < 10; ++b) {
      sliceproxy::proxier::EndpointKey e;
      e.ip = *sliceproxy::proxier::IpAddr::parse(
          fmt::format("10.245.{}.{}", (s * 10 + b) / 250, (s * 10 + b) % 250 + 1));
      e.port = 8080;
      backends.push_back(e);
    }
    const uint32_t size = maglevTableSizeFor(kMaglevDefaultTableSize, backends.size());
    const auto table = maglevTable(backends, size);
    const uint32_t first = nextId;
    for (const auto& e : backends) {
      np_backend b{};
      std::memcpy(b.addr, e.ip.bytes.data(), 4);
      b.port = htons(e.port);
      b.family = NP_FAMILY_V4;
      progs.setBackend(nextId++, b);
    }
    std::vector<uint32_t> ids(table.size());
    for (size_t i = 0; i < table.size(); ++i) ids[i] = first + table[i];
    const uint32_t tableId = static_cast<uint32_t>(s + 1);
    progs.setMaglevTable(tableId, ids);
    np_fe_key k{};
    inet_pton(AF_INET, "192.168.0.10", k.addr);
    k.port = htons(static_cast<uint16_t>(20000 + s));
    k.proto = IPPROTO_UDP;
    k.family = NP_FAMILY_V4;
    progs.setFrontend(k, {tableId, size, 0, 0, tableId, 0});
  }
}

// An established flow measured over many runs of one buffer: 192.168.0.10:30000 has the single
// backend 10.245.200.1:8080, which is itself a frontend whose backend is 192.168.0.10:30000, so
// every run translates the packet the previous one wrote (TTL 255: XDP forwards while it is
// above 1, 250 runs).
void writeMirror(NodePortPrograms& progs) {
  auto one = [&](const char* fe, uint16_t fport, const char* be, uint16_t bport, uint32_t id) {
    np_backend b{};
    inet_pton(AF_INET, be, b.addr);
    b.port = htons(bport);
    b.family = NP_FAMILY_V4;
    progs.setBackend(id, b);
    const uint32_t size = maglevTableSizeFor(kMaglevDefaultTableSize, 1);
    progs.setMaglevTable(id, std::vector<uint32_t>(size, id));
    np_fe_key k{};
    inet_pton(AF_INET, fe, k.addr);
    k.port = htons(fport);
    k.proto = IPPROTO_UDP;
    k.family = NP_FAMILY_V4;
    progs.setFrontend(k, {id, size, 0, 0, id, 0});
  };
  one("192.168.0.10", 30000, "10.245.200.1", 8080, 900001);
  one("10.245.200.1", 8080, "192.168.0.10", 30000, 900002);
}

std::vector<uint8_t> withTtl255(std::vector<uint8_t> f) {
  f[14 + 8] = 255;
  packet::put16(f.data() + 24, 0);
  packet::put16(f.data() + 24, packet::fold(packet::sum16(f.data() + 14, 20)));
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("bench_nodeport_pps needs root: unshare(CLONE_NEWNET)");
    return 1;
  }
  if (std::system("ip link add px0 type veth peer name px1 && ip link set px0 up && "
                  "ip link set px1 up && ip addr add 198.18.0.1/24 dev px0 && "
                  "ip neigh add 198.18.0.2 lladdr 02:00:00:00:18:02 dev px0 nud permanent && "
                  "ip route add 10.245.0.0/16 via 198.18.0.2 && "
                  "ip route add 192.168.0.0/24 via 198.18.0.2 && "
                  "sysctl -qw net.ipv4.ip_forward=1") != 0) {
    std::fprintf(stderr, "building px0/px1\n");
    return 1;
  }
  const int in = static_cast<int>(if_nametoindex("px1"));
  const int pass = passProgram();
  if (pass < 0) {
    std::perror("loading the XDP_PASS program");
    return 1;
  }
  std::printf(
      "| services | program | flow | ns/packet (median) | Mpps per core "
      "|\n|---|---|---|---|---|\n");
  for (int services : {10, 10000}) {
    NodePortPrograms progs;
    writeServices(progs, services);
    writeMirror(progs);
    // np_xdp sends only out of interfaces it runs on natively.
    if (auto why = progs.attachXdp(static_cast<int>(if_nametoindex("px0"))); !why.empty()) {
      std::fprintf(stderr, "%s\n", why.c_str());
      return 1;
    }
    struct Row {
      const char* prog;
      int fd;
      bool xdp;
    };
    const Row rows[] = {{"no-op XDP (XDP_PASS)", pass, true},
                        {"np_xdp", progs.xdpFd(), true},
                        {"np_ingress (tc)", progs.ingressFd(), false}};
    uint16_t nextPort = 1024;
    for (const Row& r : rows) {
      for (bool established : {false, true}) {
        std::vector<double> medians;
        for (int round = 0; round < rounds; ++round) {
          std::vector<double> ns;
          ns.reserve(runs);
          packet::Flow f{"203.0.113.7", "192.168.0.10", 0, 20000, IPPROTO_UDP};
          f.sport = nextPort;
          const std::vector<uint8_t> mirror = withTtl255(
              packet::build({"203.0.113.7", "192.168.0.10", nextPort++, 30000, IPPROTO_UDP}));
          if (established) {
            runOnce(r.fd, mirror, in, r.xdp, 2);  // both directions' entries made
            const uint32_t d = runOnce(r.fd, mirror, in, r.xdp, 250);
            if (d == 0) {
              std::fprintf(stderr, "BPF_PROG_TEST_RUN failed: %s\n", std::strerror(errno));
              return 1;
            }
            medians.push_back(d);
            continue;
          }
          for (int i = 0; i < runs; ++i) {
            f.dport = static_cast<uint16_t>(20000 + i % services);
            f.sport = nextPort;
            nextPort = nextPort == 65535 ? 1024 : nextPort + 1;
            if (nextPort == 1024) f.src = "203.0.113." + std::to_string(8 + round);
            const uint32_t d = runOnce(r.fd, packet::build(f), in, r.xdp);
            if (d == 0) {
              std::fprintf(stderr, "BPF_PROG_TEST_RUN failed: %s\n", std::strerror(errno));
              return 1;
            }
            ns.push_back(d);
          }
          medians.push_back(median(ns));
        }
        const double m = median(medians);
        std::printf("| %d | %s | %s | %.0f | %.1f |\n", services, r.prog,
                    established ? "established (mean of 250 runs)" : "new (one run each)", m,
                    1000.0 / m);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
