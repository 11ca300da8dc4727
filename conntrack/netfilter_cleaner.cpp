#include <netinet/in.h>

#include "conntrack/netfilter_cleaner.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/unordered/unordered_flat_set.hpp>
#include <cstring>
#include <utility>

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

Flow fromRecord(const proxier::RecordedFlow& rf) {
  Flow f;
  f.family = rf.family;
  f.proto = rf.proto;
  f.orig = {rf.client, rf.frontend, rf.clientPort, rf.frontendPort};
  f.reply.src = rf.endpoint;
  f.reply.sport = rf.endpointPort;
  return f;
}

proxier::RecordedFlow toRecord(const Flow& f) {
  return {f.family,      f.proto,      f.orig.src,    f.orig.dst,
          f.reply.src,   f.orig.sport, f.orig.dport, f.reply.sport};
}

}  // namespace

void NetfilterCleaner::deleteRecorded(std::vector<FlowSelector>& selectors, CtSocket& socket,
                                      const std::function<void(std::span<const Flow>)>& onChunk,
                                      CleanResult& r) {
  for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
    std::vector<FlowSelector> mine;
    boost::unordered_flat_set<IpAddr, proxier::IpAddrHash> endpoints;
    for (const auto& s : selectors) {
      if (s.family == family && s.reason == StaleReason::EndpointGone) {
        mine.push_back(s);
        endpoints.insert(s.endpoint);
      }
    }
    if (mine.empty()) continue;
    const SelectorIndex index(mine);
    const LocalAddresses local =
        index.needsLocalAddresses() ? LocalAddresses::read() : LocalAddresses();
    // Candidates by the record, then each one's current state from the kernel (its id and real
    // reply tuple), which is what gets judged and deleted: the record may be behind.
    std::vector<Flow> candidates;
    std::string error;
    const auto coverage = flows_->flowsAnsweredBy(
        family, [&](const IpAddr& a) { return endpoints.contains(a); },
        [&](const proxier::RecordedFlow& rf) {
          Flow f = fromRecord(rf);
          if (index.match(f, local)) candidates.push_back(f);
        },
        error);
    if (coverage != proxier::FlowIndex::Coverage::Complete) {
      if (!error.empty()) {
        ++r.errors;
        spdlog::warn("conntrack: {}; walking the table instead", error);
      }
      continue;
    }
    ++r.recordLookups;
    std::erase_if(selectors, [&](const FlowSelector& s) {
      return s.family == family && s.reason == StaleReason::EndpointGone;
    });
    std::vector<Flow> found;
    std::vector<const Flow*> batch;
    bool lookupFailed = false;
    for (size_t i = 0; i < candidates.size(); i += CtSocket::kMaxBatch) {
      batch.clear();
      for (size_t j = i; j < candidates.size() && j < i + CtSocket::kMaxBatch; ++j) {
        batch.push_back(&candidates[j]);
      }
      found.clear();
      if (int err = socket.lookupFlows(batch, found); err) {
        ++r.errors;
        if (!std::exchange(lookupFailed, true)) {
          r.retry.insert(r.retry.end(), mine.begin(), mine.end());
        }
        spdlog::warn("conntrack: reading {} recorded flows: {}", batch.size(), std::strerror(err));
      }
      onChunk(found);
    }
  }
}

NetfilterCleaner::NetfilterCleaner(NetfilterCleanerOptions opts) : opts_(opts) {
  // The kernel tracks SCTP when its conntrack helper is built in or loaded; its sysctls say so.
  sctp_ = access("/proc/sys/net/netfilter/nf_conntrack_sctp_timeout_established", F_OK) == 0;
}

bool NetfilterCleaner::handles(proxier::Protocol p) const {
  return (p == proxier::Protocol::UDP && !opts_.sctpOnly) ||
         (p == proxier::Protocol::SCTP && sctp_);
}

CleanResult NetfilterCleaner::deleteFlows(std::span<const FlowSelector> selectors,
                                          FlowJudge* judge) {
  CleanResult r;
  if (selectors.empty()) return r;
  const auto start = Clock::now();
  Sockets socks;
  if (!openSockets(socks, r)) r.retry.assign(selectors.begin(), selectors.end());
  if (socks.del) {
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
    std::vector<FlowSelector> walk(selectors.begin(), selectors.end());
    if (flows_) deleteRecorded(walk, *socks.dump, onChunk, r);
    for (const DumpFilter& filter : planDumps(walk, opts_.maxFilteredDumps)) {
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
        for (const auto& s : walk) {
          if (s.family == filter.family && (!filter.proto || s.proto == filter.proto)) {
            r.retry.push_back(s);
          }
        }
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
  // Seeding the flow record: translated flows that stay are recorded as they are walked.
  const bool seed = flows_ && flows_->needsSeed();
  const uint64_t generation = seed ? flows_->generation() : 0;
  bool seedFailed = false;
  std::vector<proxier::RecordedFlow> toRecord;
  auto recordSeen = [&] {
    if (toRecord.empty()) return;
    std::string error;
    flows_->recordFlows(toRecord, error);
    toRecord.clear();
    if (!error.empty() && !seedFailed) {
      seedFailed = true;
      ++r.errors;
      spdlog::warn("conntrack: seeding the flow record: {}; cleanups keep walking the table", error);
    }
  };
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
                  if (auto reason = judge.judge(f)) {
                    queue.add(f, nullptr, *reason);
                  } else if (seed && f.translated()) {
                    toRecord.push_back(conntrack::toRecord(f));
                  }
                }
                queue.flush();
              });
              recordSeen();
            },
            [&] { return judge.cancelled(); });
        if (err == ECANCELED) {
          seedFailed = true;
          break;
        }
        if (err) {
          ++r.errors;
          seedFailed = true;
          spdlog::warn("conntrack: cannot list flows ({}): {}", filter.str(), std::strerror(err));
        }
      }
    }
    if (seed && !seedFailed) {
      flows_->markSeeded(generation);
      spdlog::info("conntrack: the flow record is seeded; endpoint removals no longer walk the "
                   "conntrack table");
    }
  }
  r.took = Clock::now() - start;
  counters_.add(r);
  counters_.sweeps.fetch_add(1, std::memory_order_relaxed);
  return r;
}

}  // namespace sliceproxy::conntrack
