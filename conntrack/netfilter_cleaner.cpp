#include <netinet/in.h>

#include "conntrack/netfilter_cleaner.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <tuple>

#include "conntrack/ctnetlink.h"
#include "conntrack/delete_queue.h"
#include "conntrack/selector_index.h"

namespace sliceproxy::conntrack {

namespace {

using Clock = std::chrono::steady_clock;

// One kernel table walk per distinct frontend. When every selector of a frontend names the
// same endpoint (the common case: one endpoint went away), the walk is narrowed to the flows
// that endpoint answers.
std::vector<DumpFilter> planDumps(std::span<const FlowSelector> selectors, size_t maxDumps) {
  struct Group {
    DumpFilter filter;
    bool oneEndpoint = true;
  };
  using Key = std::tuple<IpFamily, uint8_t, bool, IpAddr, uint16_t>;
  std::map<Key, Group> groups;
  for (const auto& s : selectors) {
    Key k{s.family, s.proto, s.anyLocalAddress, s.anyLocalAddress ? IpAddr{} : s.dst, s.dport};
    auto [it, inserted] = groups.try_emplace(k);
    Group& g = it->second;
    if (inserted) {
      g.filter.family = s.family;
      g.filter.proto = s.proto;
      if (!s.anyLocalAddress) g.filter.origDst = s.dst;
      g.filter.origDport = s.dport;
      if (s.reason == StaleReason::EndpointGone) {
        g.filter.replySrc = s.endpoint;
        g.filter.replySport = s.endpointPort;
      } else {
        g.oneEndpoint = false;
      }
      continue;
    }
    if (!g.oneEndpoint) continue;
    if (s.reason != StaleReason::EndpointGone || g.filter.replySrc != s.endpoint ||
        g.filter.replySport != s.endpointPort) {
      g.oneEndpoint = false;
    }
  }
  std::vector<DumpFilter> out;
  if (groups.size() > maxDumps) {
    // Too many frontends: one walk per protocol and family, matched through the index.
    std::map<std::pair<IpFamily, uint8_t>, bool> broad;
    for (const auto& s : selectors) broad[{s.family, s.proto}] = true;
    for (const auto& [k, unused] : broad) {
      DumpFilter f;
      f.family = k.first;
      f.proto = k.second;
      out.push_back(f);
    }
    return out;
  }
  for (auto& [k, g] : groups) {
    if (!g.oneEndpoint) {
      g.filter.replySrc.reset();
      g.filter.replySport.reset();
    }
    out.push_back(g.filter);
  }
  return out;
}

struct Sockets {
  std::unique_ptr<CtSocket> dump, del;
};

bool openSockets(Sockets& s, CleanResult& r) {
  std::string error;
  s.dump = CtSocket::open(error);
  if (s.dump) s.del = CtSocket::open(error);
  if (!s.dump || !s.del) {
    spdlog::error("conntrack: {}; stale flows are not cleaned", error);
    ++r.errors;
    return false;
  }
  return true;
}

}  // namespace

NetfilterCleaner::NetfilterCleaner(NetfilterCleanerOptions opts) : opts_(opts) {
  // The kernel tracks SCTP when its conntrack helper is built in or loaded; its sysctls say so.
  sctp_ = access("/proc/sys/net/netfilter/nf_conntrack_sctp_timeout_established", F_OK) == 0;
}

bool NetfilterCleaner::handles(proxier::Protocol p) const {
  return p == proxier::Protocol::UDP || (p == proxier::Protocol::SCTP && sctp_);
}

CleanResult NetfilterCleaner::deleteFlows(std::span<const FlowSelector> selectors) {
  CleanResult r;
  if (selectors.empty()) return r;
  const auto start = Clock::now();
  Sockets socks;
  if (openSockets(socks, r)) {
    SelectorIndex index(selectors);
    const LocalAddresses local =
        index.needsLocalAddresses() ? LocalAddresses::read() : LocalAddresses();
    DeleteQueue queue(*socks.del, r, opts_.maxLoggedErrors);
    for (const DumpFilter& filter : planDumps(selectors, opts_.maxFilteredDumps)) {
      ++r.dumps;
      int err = socks.dump->dump(filter, [&](std::span<const Flow> flows) {
        r.examined += flows.size();
        for (const Flow& f : flows) {
          if (const FlowSelector* s = index.match(f, local)) queue.add(f, s, s->reason);
        }
      });
      if (err) {
        ++r.errors;
        spdlog::warn("conntrack: cannot list flows ({}): {}", filter.str(), std::strerror(err));
      }
    }
    queue.flush();
  }
  r.took = Clock::now() - start;
  counters_.add(r);
  return r;
}

CleanResult NetfilterCleaner::sweep(FlowJudge& judge) {
  CleanResult r;
  const auto start = Clock::now();
  Sockets socks;
  if (openSockets(socks, r)) {
    DeleteQueue queue(*socks.del, r, opts_.maxLoggedErrors);
    for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
      for (uint8_t proto : {uint8_t(IPPROTO_UDP), uint8_t(IPPROTO_SCTP)}) {
        if (proto == IPPROTO_SCTP && !sctp_) continue;
        DumpFilter filter;
        filter.family = family;
        filter.proto = proto;
        ++r.dumps;
        int err = socks.dump->dump(filter, [&](std::span<const Flow> flows) {
          r.examined += flows.size();
          // Judge and delete under the judge's lock: a sync cannot program a new endpoint
          // between the verdict and the delete.
          judge.underLock([&] {
            for (const Flow& f : flows) {
              if (f.proto != proto) continue;
              if (auto reason = judge.judge(f)) queue.add(f, nullptr, *reason);
            }
            queue.flush();
          });
        });
        if (err) {
          ++r.errors;
          spdlog::warn("conntrack: cannot list flows ({}): {}", filter.str(), std::strerror(err));
        }
      }
    }
  }
  r.took = Clock::now() - start;
  counters_.add(r);
  counters_.sweeps.fetch_add(1, std::memory_order_relaxed);
  return r;
}

}  // namespace sliceproxy::conntrack
