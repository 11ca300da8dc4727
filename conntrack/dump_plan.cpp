#include "conntrack/dump_plan.h"

#include <map>
#include <tuple>

namespace sliceproxy::conntrack {

namespace {

// The narrowest filter every selector of the group passes.
DumpFilter commonFilter(const std::vector<const FlowSelector*>& group) {
  const FlowSelector& first = *group.front();
  DumpFilter f;
  f.family = first.family;
  f.proto = first.proto;
  bool sameDst = !first.anyLocalAddress, sameDport = true, sameEndpoint = true;
  for (const FlowSelector* s : group) {
    sameDst = sameDst && !s->anyLocalAddress && s->dst == first.dst;
    sameDport = sameDport && s->dport == first.dport;
    sameEndpoint = sameEndpoint && s->reason == StaleReason::EndpointGone &&
                   s->endpoint == first.endpoint && s->endpointPort == first.endpointPort;
  }
  if (sameDst) f.origDst = first.dst;
  if (sameDport) f.origDport = first.dport;
  if (sameEndpoint) {
    f.replySrc = first.endpoint;
    f.replySport = first.endpointPort;
  }
  return f;
}

template <typename KeyFn>
std::vector<DumpFilter> grouped(std::span<const FlowSelector> selectors, KeyFn key) {
  std::map<decltype(key(selectors.front())), std::vector<const FlowSelector*>> groups;
  for (const auto& s : selectors) groups[key(s)].push_back(&s);
  std::vector<DumpFilter> out;
  for (const auto& [k, g] : groups) out.push_back(commonFilter(g));
  return out;
}

}  // namespace

std::vector<DumpFilter> planDumps(std::span<const FlowSelector> selectors, size_t maxWalks) {
  if (selectors.empty()) return {};
  using Key = std::tuple<IpFamily, uint8_t, int, IpAddr, uint16_t>;
  auto frontend = [](const FlowSelector& s) {
    return Key{s.family, s.proto, s.anyLocalAddress ? 1 : 0, s.anyLocalAddress ? IpAddr{} : s.dst,
               s.dport};
  };
  auto endpointElseFrontend = [&](const FlowSelector& s) {
    if (s.reason == StaleReason::EndpointGone) {
      return Key{s.family, s.proto, 2, s.endpoint, s.endpointPort};
    }
    return frontend(s);
  };
  std::vector<DumpFilter> byFrontend = grouped(selectors, frontend);
  std::vector<DumpFilter> byEndpoint = grouped(selectors, endpointElseFrontend);
  std::vector<DumpFilter>& best = byEndpoint.size() < byFrontend.size() ? byEndpoint : byFrontend;
  if (best.size() <= maxWalks) return std::move(best);

  // Too many: one walk per protocol and family; the caller matches through its index.
  std::map<std::pair<IpFamily, uint8_t>, bool> broad;
  for (const auto& s : selectors) broad[{s.family, s.proto}] = true;
  std::vector<DumpFilter> out;
  for (const auto& [k, unused] : broad) {
    DumpFilter f;
    f.family = k.first;
    f.proto = k.second;
    out.push_back(f);
  }
  return out;
}

}  // namespace sliceproxy::conntrack
