// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/flow_record.h"

#include <fmt/format.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tuple_common.h>
#include <linux/netfilter/nf_tables.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "backends/nftnl/elements.h"
#include "backends/nftnl/rule_builder.h"
#include "backends/node_policy/packet_keys.h"

namespace sliceproxy::backends::nft {

using proxier::IpAddr;
using proxier::IpFamily;
using proxier::RecordedFlow;

namespace {

constexpr const char* kSet = "flows";

uint32_t readSysctl(const char* name) {
  std::ifstream in(std::string("/proc/sys/net/netfilter/") + name);
  uint32_t v = 0;
  in >> v;
  return in ? v : 0;
}

// An element's timeout is what conntrack gives the flow after the same packet, plus a margin
// (a sysctl changed later, the moment between the two refreshes): a UDP flow not yet answered
// lives nf_conntrack_udp_timeout (30 s), an answered one up to nf_conntrack_udp_timeout_stream
// (120 s; the kernel extends a replied flow at any later packet, so the client's packet must
// cover it), an SCTP association its established timeout. One timeout for all (the longest,
// 240 s) kept every one-shot DNS flow's element eight times longer than its conntrack entry,
// and a busy node's record full of flows long gone. Capped at a day (an SCTP association idle
// longer than that is found by the periodic reconcile, if enabled).
constexpr uint32_t kTimeoutMarginS = 10;

std::chrono::seconds withMargin(uint32_t conntrackSeconds, uint32_t fallback) {
  const uint32_t t = conntrackSeconds ? conntrackSeconds : fallback;
  return std::chrono::seconds(std::min<uint32_t>(t + kTimeoutMarginS, 86400));
}

FlowRecord::Timeouts timeoutsFromSysctls() {
  FlowRecord::Timeouts t;
  t.udpUnreplied = withMargin(readSysctl("nf_conntrack_udp_timeout"), 30);
  t.udpReplied = withMargin(readSysctl("nf_conntrack_udp_timeout_stream"), 120);
  t.sctp = withMargin(readSysctl("nf_conntrack_sctp_timeout_established"), 210);
  return t;
}

uint32_t addrLen(IpFamily f) {
  return f == IpFamily::V4 ? 4 : 16;
}

// endpoint . endpoint port . protocol . client . client port . frontend . frontend port, each
// field on a 4-byte boundary (ports in network order, protocol one byte).
uint32_t keyLen(IpFamily f) {
  return 3 * addrLen(f) + 16;
}

Bytes keyOf(const RecordedFlow& f) {
  Bytes b;
  b.addr(f.endpoint).port(f.endpointPort);
  b.b[b.len] = f.proto;
  b.len += 4;
  b.addr(f.client).port(f.clientPort).addr(f.frontend).port(f.frontendPort);
  return b;
}

bool decode(IpFamily family, const uint8_t* k, uint32_t len, RecordedFlow& out) {
  const uint32_t al = addrLen(family);
  if (len != keyLen(family)) return false;
  auto addr = [&](uint32_t off) {
    IpAddr a;
    a.family = family;
    std::memcpy(a.bytes.data(), k + off, al);
    return a;
  };
  auto port = [&](uint32_t off) { return static_cast<uint16_t>((k[off] << 8) | k[off + 1]); };
  out.family = family;
  out.endpoint = addr(0);
  out.endpointPort = port(al);
  out.proto = k[al + 4];
  out.client = addr(al + 8);
  out.clientPort = port(2 * al + 8);
  out.frontend = addr(2 * al + 12);
  out.frontendPort = port(3 * al + 12);
  return true;
}

constexpr const char* kFrontends = "frontends";  // ct original daddr . proto . dport
constexpr const char* kNodePorts = "nodeports";  // proto . ct original dport
constexpr const char* kRecordChain = "record-flow";
// In the flows set's user data: a table without it has an older layout and is replaced.
constexpr std::string_view kLayout = "sliceproxy flow record 2";

// Most packets leave after the first rule (not UDP/SCTP), the rest after the second or third
// unless they belong to a flow DNATed here and travel in its original direction. Replies are
// not recorded: a stale flow is one whose client still sends (to an endpoint that is gone), and
// each client packet refreshes the element; refreshing on replies too doubled the record's cost
// per request/reply flow (bench/RESULTS.md, "The flow record, original direction only").
void addGuards(Transaction& tx, const char* chain) {
  const uint8_t udp = IPPROTO_UDP, sctp = IPPROTO_SCTP, original = IP_CT_DIR_ORIGINAL;
  RuleBuilder proto;
  proto.meta(NFT_META_L4PROTO, NFT_REG_1);
  proto.cmp(NFT_REG_1, NFT_CMP_NEQ, &udp, 1).cmp(NFT_REG_1, NFT_CMP_NEQ, &sctp, 1);
  proto.verdict(NFT_RETURN);
  tx.addRule(kFlowTable, chain, proto.release(), "not UDP or SCTP");
  RuleBuilder dir;
  dir.ct(NFT_CT_DIRECTION, NFT_REG_1).cmp(NFT_REG_1, NFT_CMP_NEQ, &original, 1);
  dir.verdict(NFT_RETURN);
  tx.addRule(kFlowTable, chain, dir.release(), "a reply");
  RuleBuilder dnat;
  uint32_t dnatBit = IPS_DST_NAT, zero = 0;
  dnat.ct(NFT_CT_STATUS, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &dnatBit, &zero);
  dnat.cmpU32(NFT_REG_1, NFT_CMP_EQ, 0).verdict(NFT_RETURN);
  tx.addRule(kFlowTable, chain, dnat.release(), "not DNATed");
}

// Sends the packet to record-flow if its original destination is one of our frontends (`set`).
void addRecordRule(Transaction& tx, const NodeFamily& ctx, const char* chain, const char* set) {
  const uint32_t aw = ctx.addrWords();
  const uint32_t dstIp = ctx.family == IpFamily::V4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6;
  const bool nodePorts = std::strcmp(set, kNodePorts) == 0;
  RuleBuilder b;
  // Ours: the destination the client addressed is one of our frontends.
  if (nodePorts) {
    b.meta(NFT_META_L4PROTO, reg32(0)).ct(NFT_CT_PROTO_DST, reg32(1), IP_CT_DIR_ORIGINAL);
  } else {
    b.ct(dstIp, reg32(0), IP_CT_DIR_ORIGINAL).meta(NFT_META_L4PROTO, reg32(aw));
    b.ct(NFT_CT_PROTO_DST, reg32(aw + 1), IP_CT_DIR_ORIGINAL);
  }
  b.lookup(reg32(0), set).verdict(NFT_GOTO, kRecordChain);
  tx.addRule(kFlowTable, chain, b.release(),
             nodePorts ? "record flows translated for our NodePorts"
                       : "record flows translated for our service addresses");
}

// The element of the packet's flow, refreshed with `timeout`: the packet's conntrack entry has
// both tuples, the reply one naming the endpoint DNAT chose. `test` adds the rule's condition
// (it may use the registers: the key is loaded after it).
void addFlowUpdate(Transaction& tx, const NodeFamily& ctx, std::chrono::seconds timeout,
                   const std::function<void(RuleBuilder&)>& test, const char* what) {
  const bool v4 = ctx.family == IpFamily::V4;
  const uint32_t aw = ctx.addrWords();
  const uint32_t srcIp = v4 ? NFT_CT_SRC_IP : NFT_CT_SRC_IP6,
                 dstIp = v4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6;
  RuleBuilder b;
  if (test) test(b);
  b.ct(srcIp, reg32(0), IP_CT_DIR_REPLY).ct(NFT_CT_PROTO_SRC, reg32(aw), IP_CT_DIR_REPLY);
  b.meta(NFT_META_L4PROTO, reg32(aw + 1));
  b.ct(srcIp, reg32(aw + 2), IP_CT_DIR_ORIGINAL);
  b.ct(NFT_CT_PROTO_SRC, reg32(2 * aw + 2), IP_CT_DIR_ORIGINAL);
  b.ct(dstIp, reg32(2 * aw + 3), IP_CT_DIR_ORIGINAL);
  b.ct(NFT_CT_PROTO_DST, reg32(3 * aw + 3), IP_CT_DIR_ORIGINAL);
  b.dynset(NFT_DYNSET_OP_UPDATE, kSet, reg32(0), 0, static_cast<uint64_t>(timeout.count()) * 1000);
  b.verdict(NFT_RETURN);
  tx.addRule(kFlowTable, kRecordChain, b.release(), what);
}

// record-flow: one element update per packet, its timeout chosen by protocol and by whether
// the flow has been answered yet.
void addFlowUpdates(Transaction& tx, const NodeFamily& ctx, const FlowRecord::Timeouts& t) {
  const uint8_t sctp = IPPROTO_SCTP;
  addFlowUpdate(
      tx, ctx, t.sctp,
      [&](RuleBuilder& b) {
        b.meta(NFT_META_L4PROTO, NFT_REG_1).cmp(NFT_REG_1, NFT_CMP_EQ, &sctp, 1);
      },
      "record an SCTP flow");
  const uint32_t seenReply = IPS_SEEN_REPLY, zero = 0;
  addFlowUpdate(
      tx, ctx, t.udpUnreplied,
      [&](RuleBuilder& b) {
        b.ct(NFT_CT_STATUS, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &seenReply, &zero);
        b.cmpU32(NFT_REG_1, NFT_CMP_EQ, 0);
      },
      "record a UDP flow not answered yet");
  addFlowUpdate(tx, ctx, t.udpReplied, nullptr, "record an answered UDP flow");
}

nftnl_set* keySet(const char* name, uint32_t keyLen) {
  nftnl_set* set = nftnl_set_alloc();
  nftnl_set_set_str(set, NFTNL_SET_NAME, name);
  nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, 0);
  nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, keyLen);
  return set;
}

// The kernel's default walks the whole set for expired elements every second: at the cap that
// is 262,144 elements a second. Expired elements no longer match and are left out of dumps, so
// a slower collection only keeps their memory (and their share of the cap) a little longer.
constexpr uint32_t kGcIntervalMs = 10'000;
constexpr const char* kGcSuffix = "#gc-interval";
constexpr const char* kLayoutSuffix = "#layout";

// The sets of the flow table and their sizes (0 when unsized) and the flows set's collection
// interval: tells a table of this layout and cap from one an older sliceproxy or another
// --flow-record-max left.
int onSet(const nlmsghdr* nlh, void* data) {
  auto* out = static_cast<std::map<std::string, uint32_t>*>(data);
  nftnl_set* s = nftnl_set_alloc();
  if (nftnl_set_nlmsg_parse(nlh, s) == 0 && nftnl_set_is_set(s, NFTNL_SET_NAME)) {
    const std::string name = nftnl_set_get_str(s, NFTNL_SET_NAME);
    (*out)[name] =
        nftnl_set_is_set(s, NFTNL_SET_DESC_SIZE) ? nftnl_set_get_u32(s, NFTNL_SET_DESC_SIZE) : 0;
    (*out)[name + kGcSuffix] = nftnl_set_is_set(s, NFTNL_SET_GC_INTERVAL)
                                   ? nftnl_set_get_u32(s, NFTNL_SET_GC_INTERVAL)
                                   : 0;
    uint32_t len = 0;
    const void* ud = nftnl_set_is_set(s, NFTNL_SET_USERDATA)
                         ? nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len)
                         : nullptr;
    (*out)[name + kLayoutSuffix] =
        ud && std::string_view(static_cast<const char*>(ud), len) == kLayout ? 1 : 0;
  }
  nftnl_set_free(s);
  return MNL_CB_OK;
}

struct ListState {
  IpFamily family;
  const std::function<bool(const IpAddr&)>* wanted;
  std::vector<RecordedFlow> matched;
  size_t elements = 0;
};

int onElements(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<ListState*>(data);
  nftnl_set* s = nftnl_set_alloc();
  if (nftnl_set_elems_nlmsg_parse(nlh, s) == 0) {
    nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s);
    for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) {
      ++st->elements;
      uint32_t len = 0;
      const auto* k = static_cast<const uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len));
      RecordedFlow f;
      if (k && decode(st->family, k, len, f) && (*st->wanted)(f.endpoint)) st->matched.push_back(f);
    }
    nftnl_set_elems_iter_destroy(it);
  }
  nftnl_set_free(s);
  return MNL_CB_OK;
}

}  // namespace

FlowRecord::FlowRecord(uint32_t maxFlows) : maxFlows_(maxFlows), timeouts_(timeoutsFromSysctls()) {}

std::chrono::seconds FlowRecord::Timeouts::longest() const {
  return std::max({udpUnreplied, udpReplied, sctp});
}

void FlowRecord::ensure(Transaction& tx, const NodeFamily& ctx, const TableList& existing,
                        const std::vector<const proxier::ServicePortInfo*>& ports) {
  const int fi = ctx.family == IpFamily::V4 ? 0 : 1;
  std::lock_guard lock(mu_);
  bool there =
      std::find(existing.names.begin(), existing.names.end(), kFlowTable) != existing.names.end();
  frontends_[fi].clear();
  if (!enabled()) {
    if (there) tx.deleteTable(kFlowTable, "the flow record is off (--flow-record-max 0)");
    exists_[fi] = false;
    return;
  }
  if (there) {
    std::map<std::string, uint32_t> sets;
    const std::string err = sock_.dump(
        NFT_MSG_GETSET, ctx.nfproto,
        [](nlmsghdr* nlh) {
          nftnl_set* s = nftnl_set_alloc();
          nftnl_set_set_str(s, NFTNL_SET_TABLE, kFlowTable.c_str());
          nftnl_set_nlmsg_build_payload(nlh, s);
          nftnl_set_free(s);
        },
        onSet, &sets);
    auto it = sets.find(kSet);
    if (!err.empty() || it == sets.end() || it->second != maxFlows_ || !sets.contains(kNodePorts) ||
        sets[std::string(kSet) + kGcSuffix] != kGcIntervalMs ||
        sets[std::string(kSet) + kLayoutSuffix] != 1) {
      // An older layout (one that recorded every DNAT) or another cap: start over.
      spdlog::info("flow record ({}): replacing table {} (another layout or cap{})",
                   proxier::familyName(ctx.family), kFlowTable, err.empty() ? "" : ": " + err);
      tx.deleteTable(kFlowTable, "replacing the flow record");
      there = false;
    }
  }
  exists_[fi] = true;
  // After DNAT: forwarded to a pod, delivered to a host-network endpoint, or sent by this node.
  static const Hook fwd{"filter", NF_INET_FORWARD, 10}, in{"filter", NF_INET_LOCAL_IN, 10},
      out{"filter", NF_INET_LOCAL_OUT, 10};
  static constexpr std::pair<const char*, const Hook*> kChains[] = {
      {"record-forward", &fwd}, {"record-input", &in}, {"record-output", &out}};
  if (there) {
    // Same layout: keep the record, refill the frontend sets in this transaction. The rules are
    // written again, so a table an older sliceproxy left records as this one does.
    tx.flushSet(kFlowTable, kFrontends);
    tx.flushSet(kFlowTable, kNodePorts);
    for (auto [chain, hook] : kChains) tx.flushChain(kFlowTable, chain);
    tx.flushChain(kFlowTable, kRecordChain);
  } else {
    // Created now (first start, replaced, or removed behind our back): what it has not seen
    // needs a seed.
    ++generation_;
    tx.addTable(kFlowTable);
    nftnl_set* set = keySet(kSet, keyLen(ctx.family));
    nftnl_set_set_u32(set, NFTNL_SET_FLAGS, NFT_SET_TIMEOUT | NFT_SET_EVAL);
    // The set's own timeout applies to elements the seeding walk adds: the longest.
    nftnl_set_set_u64(set, NFTNL_SET_TIMEOUT,
                      static_cast<uint64_t>(timeouts_.longest().count()) * 1000);
    nftnl_set_set_data(set, NFTNL_SET_USERDATA, kLayout.data(),
                       static_cast<uint32_t>(kLayout.size()));
    nftnl_set_set_u32(set, NFTNL_SET_GC_INTERVAL, kGcIntervalMs);
    nftnl_set_set_u32(set, NFTNL_SET_DESC_SIZE, maxFlows_);
    tx.addSet(kFlowTable, set, "set flows (translated UDP/SCTP flows)");
    tx.addSet(kFlowTable, keySet(kFrontends, addrLen(ctx.family) + 8),
              "set frontends (our UDP/SCTP service addresses)");
    tx.addSet(kFlowTable, keySet(kNodePorts, 8), "set nodeports (our UDP/SCTP NodePorts)");
    for (auto [chain, hook] : kChains) tx.addChain(kFlowTable, chain, hook);
    tx.addChain(kFlowTable, kRecordChain);
  }
  addFlowUpdates(tx, ctx, timeouts_);
  for (auto [chain, hook] : kChains) {
    addGuards(tx, chain);
    addRecordRule(tx, ctx, chain, kFrontends);
    addRecordRule(tx, ctx, chain, kNodePorts);
  }
  for (const auto* info : ports) refcount(tx, *info, +1);
}

void FlowRecord::frontendKeys(const proxier::ServicePortInfo& info,
                              const std::function<void(const char*, const Bytes&)>& fn) const {
  const auto proto = info.key.port.protocol;
  if (proto != proxier::Protocol::UDP && proto != proxier::Protocol::SCTP) return;
  fn(kFrontends, frontendKey(info.clusterIP, proto, info.port));
  for (const auto& a : info.externalIPs) fn(kFrontends, frontendKey(a, proto, info.port));
  for (const auto& a : info.loadBalancerIPs) fn(kFrontends, frontendKey(a, proto, info.port));
  if (info.nodePort) fn(kNodePorts, nodePortKey(proto, info.nodePort));
}

void FlowRecord::refcount(Transaction& tx, const proxier::ServicePortInfo& info, int delta) {
  if (!enabled()) return;
  auto& keys = frontends_[info.key.port.family == IpFamily::V4 ? 0 : 1];
  frontendKeys(info, [&](const char* set, const Bytes& key) {
    auto k = std::make_pair(std::string(set),
                            std::string(reinterpret_cast<const char*>(key.b), key.len));
    uint32_t& n = keys[k];
    std::vector<nftnl_set_elem*> elem;
    if (delta > 0 && n++ == 0) {
      elem.push_back(makeElem(key, nullptr));
      tx.addElements(kFlowTable, set, elem, "our frontend");
    } else if (delta < 0 && n > 0 && --n == 0) {
      elem.push_back(makeElem(key, nullptr));
      tx.deleteElements(kFlowTable, set, elem, "no longer our frontend");
    }
    if (n == 0) keys.erase(k);
  });
}

void FlowRecord::portGone(Transaction& tx, const proxier::ServicePortInfo& info) {
  refcount(tx, info, -1);
}

void FlowRecord::portCame(Transaction& tx, const proxier::ServicePortInfo& info) {
  refcount(tx, info, +1);
}

void FlowRecord::recordFlows(std::span<const RecordedFlow> flows, std::string& error) {
  for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
    std::vector<nftnl_set_elem*> elems;
    for (const auto& f : flows) {
      if (f.family == family) elems.push_back(makeElem(keyOf(f), nullptr));
    }
    if (elems.empty()) continue;
    std::lock_guard lock(mu_);
    Transaction tx(sock_, family == IpFamily::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
    tx.addElements(kFlowTable, kSet, elems, "recorded flows");
    auto r = tx.commit();
    if (!r.ok) {
      error = fmt::format("{} {}: {}", proxier::familyName(family), kFlowTable, r.error);
      return;
    }
  }
}

void FlowRecord::markSeeded(uint64_t generation) {
  seeded_.store(generation);
}

void FlowRecord::removed() {
  std::lock_guard lock(mu_);
  exists_[0] = exists_[1] = false;
}

proxier::FlowIndex::Coverage FlowRecord::flowsAnsweredBy(
    IpFamily family, const std::function<bool(const IpAddr&)>& wanted,
    const std::function<void(const RecordedFlow&)>& fn, std::string& error) {
  const int fi = family == IpFamily::V4 ? 0 : 1;
  // Matches are handed out after the lock is released: `fn` may wait for a sync, and a sync may
  // be waiting for this lock (ensure).
  std::unique_lock lock(mu_);
  if (!exists_[fi] || needsSeed()) return Coverage::Incomplete;
  const uint16_t nfproto = family == IpFamily::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
  ListState st{family, &wanted, {}, 0};
  const std::string err = sock_.dump(
      NFT_MSG_GETSETELEM, nfproto,
      [](nlmsghdr* nlh) {
        nftnl_set* s = nftnl_set_alloc();
        nftnl_set_set_str(s, NFTNL_SET_TABLE, kFlowTable.c_str());
        nftnl_set_set_str(s, NFTNL_SET_NAME, kSet);
        nftnl_set_elems_nlmsg_build_payload(nlh, s);
        nftnl_set_free(s);
      },
      onElements, &st);
  if (!err.empty()) {
    error = fmt::format("reading the flow record ({} {}): {}", proxier::familyName(family),
                        kFlowTable, err);
    return Coverage::Error;
  }
  lock.unlock();
  // A full set stops recording new flows: what it misses, only a walk finds.
  {
    std::lock_guard fillLock(mu_);
    lastFill_ = {true, st.elements, maxFlows_};
  }
  if (st.elements + 64 >= maxFlows_) return Coverage::Incomplete;
  for (const auto& f : st.matched) fn(f);
  return Coverage::Complete;
}

size_t FlowRecord::countLocked(IpFamily family, std::string& error) {
  const std::function<bool(const IpAddr&)> none = [](const IpAddr&) { return false; };
  ListState st{family, &none, {}, 0};
  error = sock_.dump(
      NFT_MSG_GETSETELEM, family == IpFamily::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6,
      [](nlmsghdr* nlh) {
        nftnl_set* s = nftnl_set_alloc();
        nftnl_set_set_str(s, NFTNL_SET_TABLE, kFlowTable.c_str());
        nftnl_set_set_str(s, NFTNL_SET_NAME, kSet);
        nftnl_set_elems_nlmsg_build_payload(nlh, s);
        nftnl_set_free(s);
      },
      onElements, &st);
  return st.elements;
}

proxier::FlowIndex::Fill FlowRecord::fill() {
  std::lock_guard lock(mu_);
  if (!enabled()) return {};
  const auto now = std::chrono::steady_clock::now();
  if (lastFill_.known && now - lastFillAt_ < kFillMaxAge) return lastFill_;
  // The fuller family: each family's set has the cap.
  uint64_t flows = 0;
  for (IpFamily f : {IpFamily::V4, IpFamily::V6}) {
    if (!exists_[f == IpFamily::V4 ? 0 : 1]) continue;
    std::string error;
    const size_t n = countLocked(f, error);
    if (!error.empty()) return {};
    flows = std::max<uint64_t>(flows, n);
  }
  lastFill_ = {true, flows, maxFlows_};
  lastFillAt_ = now;
  return lastFill_;
}

}  // namespace sliceproxy::backends::nft
