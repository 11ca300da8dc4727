#include "bench/harness_workload.h"

#include <fmt/format.h>

#include <cctype>
#include <iterator>
#include <map>
#include <stdexcept>
#include <vector>

namespace sliceproxy::bench {

using namespace proxier;

size_t seedSlices(size_t endpoints) {
  size_t published = (endpoints * 1006 + 50000) / 100000;
  size_t atMost100 = (endpoints + 99) / 100;
  return std::max<size_t>({1, published, atMost100});
}

HarnessWorkload makeHarnessWorkload(const std::string& kind, size_t endpoints, size_t services,
                                    size_t perService) {
  HarnessWorkload hw;
  if (kind == "seed") {
    hw.name = "seed";
    hw.w = seedWorkload(endpoints, seedSlices(endpoints));
  } else if (kind == "wide") {
    hw.name = "wide";
    hw.w = wideWorkload(services, perService);
  } else {
    throw std::invalid_argument("unknown workload '" + kind + "' (seed or wide)");
  }
  hw.changeSlice = hw.w.slices.size() / 2;
  return hw;
}

SlicePtr changedSlice(const HarnessWorkload& hw, uint32_t k) {
  return withReplacedEndpoint(*hw.w.slices[hw.changeSlice], k);
}

std::pair<ServicePtr, SlicePtr> extraService(uint32_t k) {
  Workload one = wideWorkload(1, 10);
  auto svc = std::make_shared<Service>(*one.services[0]);
  svc->key.name = fmt::format("extra-{}", k);
  svc->clusterIPs = {*IpAddr::parse(fmt::format("10.100.{}.{}", k / 250, k % 250 + 1))};
  auto slice = std::make_shared<EndpointSlice>(*one.slices[0]);
  slice->key.name = svc->key.name + "-x";
  slice->serviceName = svc->key.name;
  slice->labels.set(std::string(kLabelServiceName), svc->key.name);
  // Fresh endpoint addresses, away from every workload's and every change's.
  for (size_t i = 0; i < slice->endpoints.size(); ++i) {
    slice->endpoints[i].addresses = {
        endpointAddress((3u << 21) + k * 16 + static_cast<uint32_t>(i))};
  }
  return {svc, slice};
}

namespace {

std::string lowerProtocol(Protocol p) {
  std::string s = protocolName(p);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void dumpService(const Service& svc, const std::vector<const EndpointSlice*>& slices,
                 const std::string& prefix, std::FILE* out) {
  for (const auto& port : svc.ports) {
    std::string eps;
    unsigned target = static_cast<unsigned>(port.targetPort.number.value_or(port.port));
    for (const auto* s : slices) {
      for (const auto& p : s->ports) {
        if (p.name == port.name) target = p.port;
      }
      for (const auto& ep : s->endpoints) {
        if (!ep.conditions.isReady()) continue;
        fmt::format_to(std::back_inserter(eps), "{}\"{}\"", eps.empty() ? "" : ",",
                       ep.addresses.front().str());
      }
    }
    std::fprintf(out,
                 "{%s\"service\":\"%s\",\"port\":\"%s\",\"protocol\":\"%s\",\"cluster_ip\":\"%s\","
                 "\"port_num\":%u,\"node_port\":%u,\"target_port\":%u,\"endpoints\":[%s]}\n",
                 prefix.c_str(), svc.key.str().c_str(), port.name.c_str(),
                 lowerProtocol(port.protocol).c_str(), svc.clusterIPs.front().str().c_str(),
                 unsigned{port.port}, unsigned{port.nodePort}, target, eps.c_str());
  }
}

}  // namespace

void dumpWorkload(const HarnessWorkload& hw, uint32_t changes, std::FILE* out) {
  std::map<std::string, std::vector<const EndpointSlice*>> byService;
  for (const auto& s : hw.w.slices) byService[s->serviceName].push_back(s.get());
  for (const auto& svc : hw.w.services) dumpService(*svc, byService[svc->key.name], "", out);
  const EndpointSlice& target = *hw.w.slices[hw.changeSlice];
  std::string before = target.endpoints.front().addresses.front().str();
  for (uint32_t k = 1; k <= changes; ++k) {
    std::string after = changedSlice(hw, k)->endpoints.front().addresses.front().str();
    std::fprintf(out, "{\"change\":%u,\"service\":\"%s\",\"remove\":\"%s\",\"add\":\"%s\"}\n", k,
                 ObjectKey{target.key.ns, target.serviceName}.str().c_str(), before.c_str(),
                 after.c_str());
    before = after;
  }
  for (uint32_t k = 1; k <= changes; ++k) {
    auto [svc, slice] = extraService(k);
    dumpService(*svc, {slice.get()}, fmt::format("\"add_service\":{},", k), out);
  }
}

}  // namespace sliceproxy::bench
