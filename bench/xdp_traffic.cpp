// The packet-rate bench's traffic driver (issue 16; bench/harness/packet_rate.py runs it): a
// UDP generator in one network namespace and a counting sink in another, both XDP programs of
// bpf/xdp_traffic.bpf.c, with the node under test in between.
//
// The generator is BPF_PROG_TEST_RUN in live-frames mode on the generator's veth: the kernel
// runs xt_gen `frames` times and transmits each frame out of that veth, so it arrives at the
// node's veth as received traffic, before any skb exists (the node's XDP program sees it
// natively; without one the veth builds an skb and the stack, nftables or tc, takes it). This
// thread is pinned to one CPU, and the node's receive processing runs in the softirq raised on
// that same CPU, so the rate it reports is what one core does: generate, forward, count. The
// generator's own share is measured by pointing it at a sink on the node's veth itself.
//
// Two measurements:
//   rate     `rounds` runs of `frames` frames as fast as the core goes; frames/s delivered to
//            the sink (and how many arrived untranslated), per round.
//   latency  a fixed rate for `latency-seconds` (the generator spins between frames, batches
//            of one frame); send-to-sink time of every delivered frame in 100 ns buckets:
//            p50, p90, p99.
// Prints one JSON object. Needs root.

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/kernel/packet_fixture.h"
// The skeleton names the shared structs; they must be declared first.
#include "xdp_traffic_shared.h"
// clang-format off
#include "xdp_traffic.skel.h"
// clang-format on

namespace {

namespace packet = sliceproxy::testing::packet;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string genNetns, genDev, sinkNetns, sinkDev, groNetns, groDev;
  std::string srcIp, dstIp, dstMac;
  uint16_t dportBase = 0, sportBase = 10000;
  uint32_t ports = 1, flows = 1;
  std::string matchNet;
  uint16_t matchPort = 0;
  uint32_t frames = 1000000, rounds = 3, batch = 64, cpu = 0;
  double rate = 20000, latencySeconds = 2;
};

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what);
}

void enterNetns(const std::string& name) {
  const std::string path = "/run/netns/" + name;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(fmt::format("opening network namespace {}: {}", path, std::strerror(errno)));
  const int rc = setns(fd, CLONE_NEWNET);
  const int err = errno;
  close(fd);
  if (rc != 0) fail(fmt::format("entering network namespace {}: {}", name, std::strerror(err)));
}

int ifindexOf(const std::string& dev, const std::string& ns) {
  const int i = static_cast<int>(if_nametoindex(dev.c_str()));
  if (i == 0) fail(fmt::format("no interface {} in network namespace {}", dev, ns));
  return i;
}

std::array<uint8_t, 6> macOf(const std::string& dev) {
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", dev.c_str());
  const int rc = ioctl(s, SIOCGIFHWADDR, &ifr);
  close(s);
  if (rc != 0) fail(fmt::format("reading the MAC address of {}: {}", dev, std::strerror(errno)));
  std::array<uint8_t, 6> mac{};
  std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  return mac;
}

// A veth takes frames sent to it at XDP (the generator's) only into a NAPI instance, which it
// has with an XDP program or with GRO: the receiving veth of a case without XDP gets GRO.
void enableGro(const std::string& dev) {
  ethtool_value on{ETHTOOL_SGRO, 1};
  ifreq req{};
  std::snprintf(req.ifr_name, IFNAMSIZ, "%s", dev.c_str());
  req.ifr_data = reinterpret_cast<char*>(&on);
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int rc = ioctl(s, SIOCETHTOOL, &req);
  const int err = errno;
  close(s);
  if (rc != 0) fail(fmt::format("turning GRO on for {}: {}", dev, std::strerror(err)));
}

std::array<uint8_t, 6> parseMac(const std::string& s) {
  std::array<unsigned, 6> v{};
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    fail("--dst-mac " + s + ": not a MAC address");
  std::array<uint8_t, 6> mac{};
  for (size_t i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(v[i]);
  return mac;
}

uint64_t sumPerCpu(int mapFd, uint32_t key, int cpus) {
  std::vector<uint64_t> v(static_cast<size_t>(cpus));
  if (bpf_map_lookup_elem(mapFd, &key, v.data()) != 0) fail("reading a sink counter");
  uint64_t sum = 0;
  for (uint64_t x : v) sum += x;
  return sum;
}

// BPF_PROG_TEST_RUN of xt_gen in live-frames mode: `count` frames out of ifindex.
void generate(int prog, const std::vector<uint8_t>& frame, int ifindex, uint32_t count,
              uint32_t batch) {
  xdp_md md{};
  md.data_end = static_cast<uint32_t>(frame.size());
  md.ingress_ifindex = static_cast<uint32_t>(ifindex);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .ctx_in = &md,
              .ctx_size_in = sizeof(md), .repeat = static_cast<int>(count),
              .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = batch);
  if (bpf_prog_test_run_opts(prog, &opts) != 0)
    fail(fmt::format("BPF_PROG_TEST_RUN (live frames) of the generator: {}", std::strerror(errno)));
}

struct Counts {
  uint64_t delivered = 0, other = 0;
};

Counts readCounts(const xdp_traffic* skel, int cpus) {
  const int fd = bpf_map__fd(skel->maps.xt_counts);
  return {sumPerCpu(fd, XT_DELIVERED, cpus), sumPerCpu(fd, XT_OTHER, cpus)};
}

// Frames still in a veth ring when the generator returns are counted after a short wait.
Counts settle(const xdp_traffic* skel, int cpus) {
  Counts last = readCounts(skel, cpus);
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const Counts now = readCounts(skel, cpus);
    if (now.delivered == last.delivered && now.other == last.other) return now;
    last = now;
  }
  return last;
}

double quantileUs(const std::vector<uint64_t>& hist, double q) {
  uint64_t total = 0;
  for (uint64_t h : hist) total += h;
  if (total == 0) return -1;
  const auto want = static_cast<uint64_t>(q * static_cast<double>(total - 1)) + 1;
  uint64_t seen = 0;
  for (size_t b = 0; b < hist.size(); ++b) {
    seen += hist[b];
    if (seen >= want) return (static_cast<double>(b) + 0.5) * XT_HIST_NS / 1000.0;
  }
  return static_cast<double>(hist.size()) * XT_HIST_NS / 1000.0;
}

int run(const Options& o) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) fail("counting the possible CPUs");
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(o.cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    fail(fmt::format("pinning to CPU {}: {}", o.cpu, std::strerror(errno)));

  xdp_traffic* skel = xdp_traffic::open_and_load();
  if (!skel) fail(fmt::format("loading bpf/xdp_traffic.bpf.c: {}", std::strerror(errno)));
  struct Guard {
    xdp_traffic* s;
    ~Guard() { xdp_traffic::destroy(s); }
  } guard{skel};

  // The sink: addresses the node must have translated to.
  uint8_t net[4] = {};
  int bits = 32;
  {
    const auto slash = o.matchNet.find('/');
    const std::string a = o.matchNet.substr(0, slash);
    if (slash != std::string::npos) bits = std::stoi(o.matchNet.substr(slash + 1));
    if (inet_pton(AF_INET, a.c_str(), net) != 1 || bits < 0 || bits > 32)
      fail("--match-net " + o.matchNet + ": not an IPv4 CIDR");
  }
  const uint32_t mask = bits == 0 ? 0 : htonl(~uint32_t{0} << (32 - bits));
  uint32_t netv;
  std::memcpy(&netv, net, 4);
  skel->bss->xt_sink_cfg.net = netv & mask;
  skel->bss->xt_sink_cfg.mask = mask;
  skel->bss->xt_sink_cfg.port = htons(o.matchPort);

  if (!o.groNetns.empty()) {
    enterNetns(o.groNetns);
    enableGro(o.groDev);
  }
  enterNetns(o.sinkNetns);
  const int sinkIf = ifindexOf(o.sinkDev, o.sinkNetns);
  if (int rc =
          bpf_xdp_attach(sinkIf, bpf_program__fd(skel->progs.xt_sink), XDP_FLAGS_DRV_MODE, nullptr);
      rc != 0)
    fail(fmt::format("attaching the sink to {} (native XDP) in {}: {}", o.sinkDev, o.sinkNetns,
                     std::strerror(-rc)));
  struct Detach {
    std::string ns;
    int ifindex;
    ~Detach() {
      try {
        enterNetns(ns);
        bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr);
      } catch (const std::exception&) {
        // The namespace is gone already, and the attachment with it.
      }
    }
  } detach{o.sinkNetns, sinkIf};

  enterNetns(o.genNetns);
  const int genIf = ifindexOf(o.genDev, o.genNetns);
  // A 64-byte frame: headers, the send time, padding.
  std::vector<uint8_t> frame =
      packet::build({o.srcIp, o.dstIp, o.sportBase, o.dportBase, IPPROTO_UDP},
                    std::string(XT_HDR_LEN - XT_STAMP_OFF, '\0'), {},
                    /*udpZeroChecksum=*/true);
  if (frame.size() != XT_HDR_LEN) fail("--src-ip/--dst-ip must be IPv4");
  const auto dmac = parseMac(o.dstMac), smac = macOf(o.genDev);
  std::memcpy(frame.data(), dmac.data(), 6);
  std::memcpy(frame.data() + 6, smac.data(), 6);
  std::memcpy(skel->bss->xt_gen_cfg.hdr, frame.data(), XT_HDR_LEN);
  skel->bss->xt_gen_cfg.flows = std::max<uint32_t>(o.flows, 1);
  skel->bss->xt_gen_cfg.ports = std::max<uint32_t>(o.ports, 1);
  skel->bss->xt_gen_cfg.dport_base = o.dportBase;
  skel->bss->xt_gen_cfg.sport_base = o.sportBase;
  const int gen = bpf_program__fd(skel->progs.xt_gen);

  // Warm-up: every flow once (connection tracking entries, caches), then a short burst.
  generate(gen, frame, genIf, std::max<uint32_t>(o.flows, 1), 1);
  generate(gen, frame, genIf, std::min<uint32_t>(o.frames, 50000), o.batch);
  const Counts warm = settle(skel, cpus);
  if (warm.delivered == 0)
    fail(fmt::format("nothing reached the sink in the warm-up ({} frames arrived untranslated)",
                     warm.other));

  std::string rounds;
  Counts before = warm;
  for (uint32_t r = 0; r < o.rounds; ++r) {
    const auto t0 = Clock::now();
    generate(gen, frame, genIf, o.frames, o.batch);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const Counts after = settle(skel, cpus);
    const uint64_t d = after.delivered - before.delivered, x = after.other - before.other;
    rounds += fmt::format(
        "{}{{\"frames\": {}, \"seconds\": {:.6f}, \"delivered\": {}, \"other\": {}, "
        "\"pps\": {:.0f}}}",
        r ? ", " : "", o.frames, secs, d, x, static_cast<double>(d) / secs);
    before = after;
  }

  // Latency at a fixed rate: one frame per batch, so each is forwarded before the next exists.
  const int hist = bpf_map__fd(skel->maps.xt_hist);
  {
    const std::vector<uint64_t> zero(static_cast<size_t>(cpus), 0);
    for (uint32_t b = 0; b < XT_HIST_BUCKETS; ++b)
      if (bpf_map_update_elem(hist, &b, zero.data(), BPF_ANY) != 0) fail("clearing the histogram");
  }
  // One run paced inside the generator (xt_pace): a run per burst would cost a page pool's
  // setup and teardown (tens of milliseconds) each time.
  const double rate = std::max(o.rate, 1.0);
  const auto sent = static_cast<uint64_t>(std::max(1.0, rate * o.latencySeconds));
  skel->bss->xt_gen_cfg.gap_ns = static_cast<uint64_t>(1e9 / rate);
  skel->bss->xt_next_ns = 0;
  const auto start = Clock::now();
  generate(gen, frame, genIf, static_cast<uint32_t>(sent), 1);
  const double latSecs = std::chrono::duration<double>(Clock::now() - start).count();
  skel->bss->xt_gen_cfg.gap_ns = 0;
  settle(skel, cpus);
  std::vector<uint64_t> h(XT_HIST_BUCKETS);
  for (uint32_t b = 0; b < XT_HIST_BUCKETS; ++b) h[b] = sumPerCpu(hist, b, cpus);
  uint64_t latDelivered = 0;
  for (uint64_t x : h) latDelivered += x;

  std::printf(
      "{\"rounds\": [%s], \"latency\": {\"rate\": %.0f, \"sent\": %llu, \"delivered\": %llu, "
      "\"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f}, \"cpu\": %u}\n",
      rounds.c_str(), static_cast<double>(sent) / latSecs, static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(latDelivered), quantileUs(h, 0.5), quantileUs(h, 0.9),
      quantileUs(h, 0.99), o.cpu);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Packet-rate bench traffic: an XDP live-frames generator and an XDP sink"};
  Options o;
  app.add_option("--gen-netns", o.genNetns, "Generator's network namespace")->required();
  app.add_option("--gen-dev", o.genDev, "Generator's veth (frames leave through it)")->required();
  app.add_option("--sink-netns", o.sinkNetns, "Sink's network namespace")->required();
  app.add_option("--sink-dev", o.sinkDev, "Sink's veth (native XDP)")->required();
  app.add_option("--gro-netns", o.groNetns, "Turn GRO on for --gro-dev in this namespace");
  app.add_option("--gro-dev", o.groDev, "The node's veth that receives the generator's frames");
  app.add_option("--src-ip", o.srcIp, "Frames' source address")->required();
  app.add_option("--dst-ip", o.dstIp, "Frames' destination address")->required();
  app.add_option("--dst-mac", o.dstMac, "Frames' destination MAC (the node's veth)")->required();
  app.add_option("--dport-base", o.dportBase, "First destination port")->required();
  app.add_option("--ports", o.ports, "Destination ports (dport-base ...)")->capture_default_str();
  app.add_option("--sport-base", o.sportBase, "First source port")->capture_default_str();
  app.add_option("--flows", o.flows, "Distinct flows, spread over the ports")
      ->capture_default_str();
  app.add_option("--match-net", o.matchNet, "Delivered: destination inside this IPv4 CIDR")
      ->required();
  app.add_option("--match-port", o.matchPort, "... and this destination port (0: any)")
      ->capture_default_str();
  app.add_option("--frames", o.frames, "Frames per rate round")->capture_default_str();
  app.add_option("--rounds", o.rounds, "Rate rounds")->capture_default_str();
  app.add_option("--batch", o.batch, "Live-frames batch size (1..256)")->capture_default_str();
  app.add_option("--cpu", o.cpu, "CPU the generator (and the node's softirq) runs on")
      ->capture_default_str();
  app.add_option("--rate", o.rate, "Frames per second of the latency measurement")
      ->capture_default_str();
  app.add_option("--latency-seconds", o.latencySeconds, "Duration of the latency measurement")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_xdp_traffic: %s\n", e.what());
    return 1;
  }
}
