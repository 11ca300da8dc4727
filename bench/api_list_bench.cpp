// The Kubernetes API source's initial list at scale (issue 4): the seed workload (one NodePort
// service, 100,000 endpoints in 1006 slices) serialized as the API server sends it (JSON list
// pages of 500, full metadata with managedFields, targetRef per endpoint), then listed through
// the real list code path (Reflector: page requests, body reads, simdjson decoding, diff against
// what is known, one batch) into a ChangeTracker. The HTTP transport is an in-memory buffer that
// hands each body out in 256 KiB reads, so network and TLS are not measured here; the end-to-end
// daemon figure (TLS, test API server) is measured by tests/apiserver/seed_cluster.py.
// Target: decoded and tracked <= 0.5 s.

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <malloc.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

#include "bench/workloads.h"
#include "proxier/core/change_tracker.h"
#include "slice-watch/list_page.h"
#include "slice-watch/reflector.h"

namespace sliceproxy::bench {
namespace {

using namespace proxier;
using namespace slicewatch;

constexpr size_t kPageSize = 500;

std::string meta(const std::string& ns, const std::string& name, uint64_t rv,
                 const std::string& labels, const std::string& managedFields) {
  return fmt::format(
      R"("metadata":{{"name":"{}",{}"uid":"6f1c2a4e-{:04x}-4a7b-9c1d-2e3f4a5b6c7d",)"
      R"("resourceVersion":"{}","generation":1,"creationTimestamp":"2026-11-21T10:00:00Z",)"
      R"("labels":{{{}}},"managedFields":[{}]}})",
      name, ns.empty() ? "" : fmt::format(R"("namespace":"{}",)", ns), rv & 0xffff, rv, labels,
      managedFields);
}

std::string serviceJson(const Service& s, uint64_t rv) {
  const auto& p = s.ports.at(0);
  std::string out = "{";
  out += meta(s.key.ns, s.key.name, rv, R"("app":"seed")",
              R"({"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"v1",)"
              R"("time":"2026-11-21T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{)"
              R"("f:ports":{},"f:selector":{},"f:type":{}}}})");
  out += fmt::format(
      R"(,"spec":{{"type":"{}","clusterIP":"{}","clusterIPs":["{}"],"ipFamilies":["IPv4"],)"
      R"("ipFamilyPolicy":"SingleStack","ports":[{{"name":"{}","protocol":"TCP","port":{},)"
      R"("targetPort":{},"nodePort":{}}}],"selector":{{"app":"seed"}},)"
      R"("sessionAffinity":"None","externalTrafficPolicy":"Cluster",)"
      R"("internalTrafficPolicy":"Cluster"}},"status":{{"loadBalancer":{{}}}}}})",
      serviceTypeName(s.type), s.clusterIPs[0].str(), s.clusterIPs[0].str(), p.name, p.port,
      *p.targetPort.number, p.nodePort);
  return out;
}

std::string sliceJson(const EndpointSlice& s, uint64_t rv) {
  std::string out = "{";
  out += meta(s.key.ns, s.key.name, rv,
              fmt::format(R"("endpointslice.kubernetes.io/managed-by":)"
                          R"("endpointslice-controller.k8s.io",)"
                          R"("kubernetes.io/service-name":"{}")",
                          s.serviceName),
              R"({"manager":"kube-controller-manager","operation":"Update",)"
              R"("apiVersion":"discovery.k8s.io/v1","time":"2026-11-21T10:00:00Z",)"
              R"("fieldsType":"FieldsV1","fieldsV1":{"f:addressType":{},)"
              R"("f:endpoints":{},"f:metadata":{"f:labels":{}},"f:ports":{}}})");
  out += R"(,"addressType":"IPv4","endpoints":[)";
  for (size_t i = 0; i < s.endpoints.size(); ++i) {
    const Endpoint& e = s.endpoints[i];
    out += fmt::format(
        R"({}{{"addresses":["{}"],"conditions":{{"ready":true,"serving":true,"terminating":false}},)"
        R"("nodeName":"{}","zone":"{}","targetRef":{{"kind":"Pod","namespace":"{}",)"
        R"("name":"{}-7d9f8c6b5-{:05x}","uid":"0b7c5e2a-{:04x}-4c1e-8f3a-9d2b1c0e4f5a"}}}})",
        i ? "," : "", e.addresses[0].str(), e.nodeName, e.zone, s.key.ns, s.serviceName,
        (rv * 131 + i) & 0xfffff, i);
  }
  out += R"(],"ports":[{"name":"http","protocol":"TCP","port":8080}]})";
  return out;
}

std::string nodeJson(const std::string& name, uint64_t rv) {
  std::string out = "{";
  out += meta("", name, rv,
              R"("kubernetes.io/hostname":"node-0","topology.kubernetes.io/zone":"zone-0")", "");
  out += R"(,"spec":{"podCIDR":"10.244.0.0/24","podCIDRs":["10.244.0.0/24"]},)"
         R"("status":{"addresses":[{"type":"InternalIP","address":"192.0.2.10"},)"
         R"({"type":"Hostname","address":"node-0"}]}})";
  return out;
}

std::vector<std::string> pages(const std::string& listKind, const std::vector<std::string>& items,
                               uint64_t rv) {
  std::vector<std::string> out;
  for (size_t start = 0; start == 0 || start < items.size(); start += kPageSize) {
    size_t end = std::min(items.size(), start + kPageSize);
    std::string p = fmt::format(R"({{"kind":"{}","apiVersion":"v1","metadata":{{)"
                                R"("resourceVersion":"{}")",
                                listKind, rv);
    if (end < items.size()) p += fmt::format(R"(,"continue":"page-{}")", end);
    p += R"(},"items":[)";
    for (size_t i = start; i < end; ++i) {
      if (i > start) p += ',';
      p += items[i];
    }
    p += "]}";
    out.push_back(std::move(p));
  }
  return out;
}

struct SeedJson {
  std::vector<std::string> services, slices, nodes;
  size_t bytes = 0, endpoints = 0;
};

const SeedJson& seedJson() {
  static const SeedJson json = [] {
    Workload w = seedWorkload();
    SeedJson j;
    uint64_t rv = 1000;
    std::vector<std::string> svc, sl;
    for (const auto& s : w.services) svc.push_back(serviceJson(*s, ++rv));
    for (const auto& s : w.slices) sl.push_back(sliceJson(*s, ++rv));
    j.services = pages("ServiceList", svc, rv);
    j.slices = pages("EndpointSliceList", sl, rv);
    j.nodes = pages("NodeList", {nodeJson(kBenchNode, ++rv)}, rv);
    for (const auto* v : {&j.services, &j.slices, &j.nodes}) {
      for (const auto& p : *v) j.bytes += p.size();
    }
    j.endpoints = w.endpoints;
    if (const char* dump = std::getenv("SLICEPROXY_BENCH_DUMP_JSON")) {
      std::ofstream(dump) << j.slices[0];
    }
    return j;
  }();
  return json;
}

// Serves list pages from memory, then a watch that waits until cancelled.
class MemoryTransport : public HttpTransport {
 public:
  explicit MemoryTransport(const std::vector<std::string>& pages) : pages_(pages) {}

  std::unique_ptr<HttpResponse> get(const std::string& target, std::chrono::seconds) override {
    if (target.find("watch=true") != std::string::npos) return std::make_unique<Hang>(*this);
    auto p = target.find("continue=page-");
    size_t index = p == std::string::npos ? 0 : std::stoul(target.substr(p + 14)) / kPageSize;
    return std::make_unique<Body>(pages_.at(index));
  }
  void cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }

 private:
  class Body : public HttpResponse {
   public:
    explicit Body(const std::string& body) : body_(body) { status_ = 200; }
    bool read(std::string& out) override {
      if (pos_ >= body_.size()) return false;
      size_t n = std::min<size_t>(256 * 1024, body_.size() - pos_);
      out.append(body_, pos_, n);
      pos_ += n;
      return true;
    }

   private:
    const std::string& body_;
    size_t pos_ = 0;
  };
  class Hang : public HttpResponse {
   public:
    explicit Hang(MemoryTransport& t) : t_(t) { status_ = 200; }
    bool read(std::string&) override {
      std::unique_lock lock(t_.mu_);
      t_.cv_.wait(lock, [&] { return t_.cancelled_; });
      throw Cancelled();
    }

   private:
    MemoryTransport& t_;
  };

  const std::vector<std::string>& pages_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
};

long statusKiB(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

// The three initial lists (Services, EndpointSlices, this Node) on three threads, as the API
// source runs them, into a ChangeTracker; timed until all three are delivered.
void BM_ApiInitialListSeed(benchmark::State& st) {
  const SeedJson& json = seedJson();
  double heapMB = 0, rssDeltaMB = 0;
  for (auto _ : st) {
    malloc_trim(0);
    const size_t heapBefore = mallinfo2().uordblks;
    const long rssBefore = statusKiB("VmRSS:");
    auto tracker = std::make_unique<ChangeTracker>(kBenchNode, FilterConfig{});
    std::vector<std::unique_ptr<MemoryTransport>> transports;
    std::vector<std::unique_ptr<Reflector>> reflectors;
    std::mutex mu;
    std::condition_variable cv;
    int listed = 0;
    ReflectorOptions opts;
    opts.origin = "https://bench";
    auto add = [&](ResourceSpec r, const std::vector<std::string>& pages) {
      transports.push_back(std::make_unique<MemoryTransport>(pages));
      reflectors.push_back(
          std::make_unique<Reflector>(std::move(r), opts, *transports.back(), *tracker, [&] {
            std::lock_guard lock(mu);
            if (++listed == 3) tracker->synced();
            cv.notify_all();
          }));
    };
    add(servicesResource(""), json.services);
    add(endpointSlicesResource(""), json.slices);
    add(nodeResource(kBenchNode), json.nodes);

    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (auto& r : reflectors) threads.emplace_back([&r] { r->run(); });
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return listed == 3; });
    }
    auto elapsed = std::chrono::steady_clock::now() - start;
    st.SetIterationTime(std::chrono::duration<double>(elapsed).count());
    if (!tracker->allSourcesSynced()) st.SkipWithError("not synced");
    if (tracker->pendingServices() != 1) st.SkipWithError("the seed service is not tracked");

    heapMB = static_cast<double>(mallinfo2().uordblks - heapBefore) / 1e6;
    rssDeltaMB = static_cast<double>(statusKiB("VmRSS:") - rssBefore) / 1024.0;
    for (auto& r : reflectors) r->stop();
    for (auto& t : threads) t.join();
  }
  st.counters["endpoints"] = static_cast<double>(json.endpoints);
  st.counters["json_MB"] = static_cast<double>(json.bytes) / 1e6;
  st.counters["heap_MB"] = heapMB;  // decoded objects + reflector caches + tracker
  st.counters["rss_delta_MB"] = rssDeltaMB;
  st.counters["rss_MB"] = static_cast<double>(statusKiB("VmRSS:")) / 1024.0;
  st.counters["peak_rss_MB"] = static_cast<double>(statusKiB("VmHWM:")) / 1024.0;
}
BENCHMARK(BM_ApiInitialListSeed)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

// Decoding alone (simdjson on-demand into the typed model): the part of the above that is not
// tracking or copying.
void BM_ApiDecodeSeedSlices(benchmark::State& st) {
  const SeedJson& json = seedJson();
  DecodeOptions opts{"bench"};
  size_t objects = 0;
  for (auto _ : st) {
    objects = 0;
    for (const auto& p : json.slices) {
      std::string body = p;
      ListPage page = decodeListPage(body, "EndpointSlice", opts);
      objects += page.items.size();
      benchmark::DoNotOptimize(page);
    }
  }
  st.counters["slices"] = static_cast<double>(objects);
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(json.bytes));
}
BENCHMARK(BM_ApiDecodeSeedSlices)->Unit(benchmark::kMillisecond)->Iterations(5);

}  // namespace
}  // namespace sliceproxy::bench
BENCHMARK_MAIN();
