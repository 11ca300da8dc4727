#include <netinet/in.h>

#include "conntrack/netfilter_cleaner.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>

#include "conntrack/ctnetlink.h"
#include "conntrack/delete_queue.h"
#include "conntrack/dump_plan.h"
#include "conntrack/selector_index.h"

namespace sliceproxy::conntrack {

namespace {

using Clock = std::chrono::steady_clock;

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

CleanResult NetfilterCleaner::deleteFlows(std::span<const FlowSelector> selectors,
                                          FlowJudge* judge) {
  CleanResult r;
  if (selectors.empty()) return r;
  const auto start = Clock::now();
  Sockets socks;
  if (openSockets(socks, r)) {
    SelectorIndex index(selectors);
    const LocalAddresses local =
        index.needsLocalAddresses() ? LocalAddresses::read() : LocalAddresses();
    DeleteQueue queue(*socks.del, r, opts_.maxLoggedErrors);
    auto onChunk = [&](std::span<const Flow> flows) {
      r.examined += flows.size();
      if (!judge) {
        for (const Flow& f : flows) {
          if (const FlowSelector* s = index.match(f, local)) queue.add(f, s, s->reason);
        }
        return;
      }
      judge->underLock([&] {
        for (const Flow& f : flows) {
          const FlowSelector* s = index.match(
              f, local, [&](const FlowSelector& sel) { return judge->stillStale(sel, f); });
          if (s) queue.add(f, s, s->reason);
        }
        queue.flush();
      });
    };
    auto stop = [&] { return judge && judge->cancelled(); };
    for (const DumpFilter& filter : planDumps(selectors, opts_.maxFilteredDumps)) {
      ++r.dumps;
      int err = socks.dump->dump(filter, onChunk, stop);
      if ((err == EINVAL || err == EOPNOTSUPP) &&
          (filter.origDst || filter.origDport || filter.replySrc || filter.replySport)) {
        // A kernel that refuses this CTA_FILTER (the request failed before any flow was sent,
        // so the socket is still usable): walk by protocol, the index does the matching.
        spdlog::warn("conntrack: the kernel refused a filtered dump ({}): {}; listing by protocol",
                     filter.str(), std::strerror(err));
        DumpFilter broad;
        broad.family = filter.family;
        broad.proto = filter.proto;
        ++r.dumps;
        err = socks.dump->dump(broad, onChunk, stop);
      }
      if (err == ECANCELED) break;
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
        if ((proto == IPPROTO_SCTP && !sctp_) || judge.cancelled()) continue;
        DumpFilter filter;
        filter.family = family;
        filter.proto = proto;
        ++r.dumps;
        int err = socks.dump->dump(
            filter,
            [&](std::span<const Flow> flows) {
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
            },
            [&] { return judge.cancelled(); });
        if (err == ECANCELED) break;
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
