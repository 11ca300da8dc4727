// bench_loadgen: the client of the issue-7 data-plane benchmark. Sends small requests to one
// address for a fixed time and prints one JSON object with the latency distribution and rate.
//   tcp_rr   one connection per worker, request/response on it (after the first packet the
//            kernel follows conntrack, so service rules are not consulted again)
//   tcp_crr  a new connection per request: connect, request, response, close with RST (no
//            TIME_WAIT to exhaust ports); every connection's first packet goes through the
//            service rules, so this is where their cost shows
//   udp_rr   a new socket (source port) per request, like a DNS resolver: each request is a
//            new conntrack flow through the service rules
// Bounded: it stops after --seconds, and a watchdog ends the process if anything hangs.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness_stats.h"

namespace {

using sliceproxy::bench::Clock;
using sliceproxy::bench::JsonObject;
using sliceproxy::bench::percentile;

struct Options {
  std::string mode = "tcp_rr";
  sockaddr_in target{};
  double seconds = 5;
  int concurrency = 1;
  size_t size = 64;
  int timeoutMs = 1000;  // a request unanswered this long counts as an error
};

struct Worker {
  std::vector<double> latUs;
  uint64_t errors = 0;
  std::string firstError;
  void fail(const char* what) {
    if (errors++ == 0) firstError = std::string(what) + ": " + std::strerror(errno);
  }
};

bool waitReadable(int fd, int timeoutMs) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeoutMs) == 1;
}

// Reads exactly n bytes, waiting at most timeoutMs for each chunk.
bool readFull(int fd, char* buf, size_t n, int timeoutMs) {
  size_t got = 0;
  while (got < n) {
    if (!waitReadable(fd, timeoutMs)) return false;
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

int tcpConnect(const Options& o, Worker& w) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    w.fail("socket");
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{o.timeoutMs / 1000, (o.timeoutMs % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&o.target), sizeof o.target) != 0) {
    w.fail("connect");
    close(fd);
    return -1;
  }
  return fd;
}

void closeWithReset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

void run(const Options& o, Worker& w, Clock::time_point end) {
  std::vector<char> req(o.size, 'x'), resp(o.size);
  int fd = -1;
  while (Clock::now() < end) {
    auto t0 = Clock::now();
    bool ok = false;
    if (o.mode == "tcp_rr" || o.mode == "tcp_crr") {
      if (fd < 0) fd = tcpConnect(o, w);
      if (fd < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      ok = write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()) &&
           readFull(fd, resp.data(), resp.size(), o.timeoutMs);
      if (!ok) w.fail("tcp request");
      if (!ok || o.mode == "tcp_crr") {
        closeWithReset(fd);
        fd = -1;
      }
    } else {
      int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ok = u >= 0 &&
           sendto(u, req.data(), req.size(), 0, reinterpret_cast<const sockaddr*>(&o.target),
                  sizeof o.target) == static_cast<ssize_t>(req.size()) &&
           waitReadable(u, o.timeoutMs) && recv(u, resp.data(), resp.size(), 0) > 0;
      if (!ok) w.fail("udp request");
      if (u >= 0) close(u);
    }
    if (ok) {
      w.latUs.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
  }
  if (fd >= 0) closeWithReset(fd);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bench_loadgen: %s\nusage: bench_loadgen --mode tcp_rr|tcp_crr|udp_rr --target "
               "IP:PORT [--seconds S] [--concurrency C] [--size BYTES]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string target;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--mode") {
      o.mode = v;
    } else if (k == "--target") {
      target = v;
    } else if (k == "--seconds") {
      o.seconds = std::atof(v.c_str());
    } else if (k == "--concurrency") {
      o.concurrency = std::atoi(v.c_str());
    } else if (k == "--size") {
      o.size = static_cast<size_t>(std::atol(v.c_str()));
    } else {
      usage(("unknown option " + k).c_str());
    }
  }
  if (o.mode != "tcp_rr" && o.mode != "tcp_crr" && o.mode != "udp_rr") usage("bad --mode");
  auto colon = target.rfind(':');
  o.target.sin_family = AF_INET;
  if (colon == std::string::npos ||
      inet_pton(AF_INET, target.substr(0, colon).c_str(), &o.target.sin_addr) != 1) {
    usage("--target must be IPv4:PORT");
  }
  o.target.sin_port = htons(static_cast<uint16_t>(std::atoi(target.c_str() + colon + 1)));
  if (o.seconds <= 0 || o.concurrency < 1 || o.size < 1 || o.size > 60000) usage("bad numbers");
  // The watchdog: every worker stops at `end`; a request blocks at most timeoutMs beyond it.
  alarm(static_cast<unsigned>(o.seconds) + 10);

  std::vector<Worker> workers(static_cast<size_t>(o.concurrency));
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  for (auto& w : workers) threads.emplace_back([&o, &w, end] { run(o, w, end); });
  for (auto& t : threads) t.join();
  const double elapsed = sliceproxy::bench::msSince(start, Clock::now()) / 1000.0;

  std::vector<double> all;
  uint64_t errors = 0;
  std::string firstError;
  for (auto& w : workers) {
    all.insert(all.end(), w.latUs.begin(), w.latUs.end());
    errors += w.errors;
    if (firstError.empty()) firstError = w.firstError;
  }
  JsonObject j;
  j.str("mode", o.mode)
      .str("target", target)
      .num("concurrency", o.concurrency)
      .num("seconds", elapsed)
      .num("requests", static_cast<double>(all.size()))
      .num("errors", static_cast<double>(errors))
      .num("rate_per_s", static_cast<double>(all.size()) / elapsed)
      .num("p50_us", percentile(all, 50))
      .num("p90_us", percentile(all, 90))
      .num("p99_us", percentile(all, 99))
      .num("max_us", percentile(all, 100));
  if (!firstError.empty()) j.str("first_error", firstError);
  j.print();
  return all.empty() ? 1 : 0;
}
