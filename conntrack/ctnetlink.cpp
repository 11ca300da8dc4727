// glibc's <netinet/in.h> (pulled in by libnetfilter_conntrack) must precede <linux/...> headers.
#include <netinet/in.h>

#include "conntrack/ctnetlink.h"

#include "proxier/core/injected_faults.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include <cerrno>
#include <cstring>

namespace sliceproxy::conntrack {

namespace {

// The kernel's CTA_FILTER field flags (net/netfilter/nf_internals.h; not exported to uapi, but
// part of the ABI since Linux 5.9).
constexpr uint32_t kFilterIpSrc = 1u << 0, kFilterIpDst = 1u << 1, kFilterProtoNum = 1u << 3,
                   kFilterSrcPort = 1u << 4, kFilterDstPort = 1u << 5;

constexpr size_t kRecvBuffer = 64 * 1024;

uint8_t afOf(IpFamily f) {
  return f == IpFamily::V4 ? AF_INET : AF_INET6;
}

struct CtDeleter {
  void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
using CtPtr = std::unique_ptr<nf_conntrack, CtDeleter>;

void readAddr(const nf_conntrack* ct, IpFamily family, nf_conntrack_attr v4, nf_conntrack_attr v6,
              IpAddr& out) {
  out = IpAddr{};
  out.family = family;
  const void* p = nfct_get_attr(ct, family == IpFamily::V4 ? v4 : v6);
  if (p) std::memcpy(out.bytes.data(), p, family == IpFamily::V4 ? 4 : 16);
}

uint16_t readPort(const nf_conntrack* ct, nf_conntrack_attr a) {
  return nfct_attr_is_set(ct, a) > 0 ? ntohs(nfct_get_attr_u16(ct, a)) : 0;
}

bool toFlow(const nf_conntrack* ct, Flow& f) {
  if (nfct_attr_is_set(ct, ATTR_ORIG_L3PROTO) <= 0) return false;
  const uint8_t l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  if (l3 != AF_INET && l3 != AF_INET6) return false;
  f.family = l3 == AF_INET ? IpFamily::V4 : IpFamily::V6;
  f.proto = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  readAddr(ct, f.family, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC, f.orig.src);
  readAddr(ct, f.family, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST, f.orig.dst);
  readAddr(ct, f.family, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC, f.reply.src);
  readAddr(ct, f.family, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST, f.reply.dst);
  f.orig.sport = readPort(ct, ATTR_ORIG_PORT_SRC);
  f.orig.dport = readPort(ct, ATTR_ORIG_PORT_DST);
  f.reply.sport = readPort(ct, ATTR_REPL_PORT_SRC);
  f.reply.dport = readPort(ct, ATTR_REPL_PORT_DST);
  f.id = nfct_attr_is_set(ct, ATTR_ID) > 0 ? nfct_get_attr_u32(ct, ATTR_ID) : 0;
  f.hasZone = nfct_attr_is_set(ct, ATTR_ZONE) > 0;
  f.zone = f.hasZone ? nfct_get_attr_u16(ct, ATTR_ZONE) : 0;
  return true;
}

void setAddr(nf_conntrack* ct, const IpAddr& a, nf_conntrack_attr v4, nf_conntrack_attr v6) {
  if (a.isV4()) {
    uint32_t v;
    std::memcpy(&v, a.bytes.data(), 4);
    nfct_set_attr_u32(ct, v4, v);
  } else {
    nfct_set_attr(ct, v6, a.bytes.data());
  }
}

nlmsghdr* putHeader(char* at, uint16_t msg, uint16_t flags, uint32_t seq, IpFamily family) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(at);
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  auto* nfh = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfh->nfgen_family = afOf(family);
  nfh->version = NFNETLINK_V0;
  nfh->res_id = 0;
  return nlh;
}

struct DumpContext {
  std::vector<Flow> flows;
};

int onDumpMessage(const nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<DumpContext*>(data);
  CtPtr ct(nfct_new());
  if (!ct) return MNL_CB_ERROR;
  if (nfct_nlmsg_parse(nlh, ct.get()) < 0) return MNL_CB_OK;  // not a flow we can read: skip
  Flow f;
  if (toFlow(ct.get(), f)) ctx->flows.push_back(f);
  return MNL_CB_OK;
}

}  // namespace

std::string DumpFilter::str() const {
  std::string s = fmt::format("{} {}", familyName(family), proto ? protoName(proto) : "any");
  if (origDst || origDport) {
    s += fmt::format(" to {}:{}", origDst ? origDst->str() : "*",
                     origDport ? std::to_string(*origDport) : "*");
  }
  if (replySrc || replySport) {
    s += fmt::format(" answered by {}:{}", replySrc ? replySrc->str() : "*",
                     replySport ? std::to_string(*replySport) : "*");
  }
  return s;
}

std::unique_ptr<CtSocket> CtSocket::open(std::string& error) {
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl) {
    error = fmt::format("cannot open a netfilter netlink socket: {}", std::strerror(errno));
    return nullptr;
  }
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    error = fmt::format("cannot bind the netfilter netlink socket: {}", std::strerror(errno));
    mnl_socket_close(nl);
    return nullptr;
  }
  // Errors without a copy of the request, so a batch's failures take little receive buffer;
  // and room for many of them (best effort: SO_RCVBUFFORCE needs CAP_NET_ADMIN, which a
  // proxy has anyway).
  int on = 1;
  mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &on, sizeof(on));
  int rcvbuf = 4 << 20;
  setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
  // Never block forever on a kernel that stopped answering.
  timeval tv{10, 0};
  setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return std::unique_ptr<CtSocket>(new CtSocket(nl));
}

CtSocket::CtSocket(mnl_socket* nl)
    : nl_(nl), portid_(mnl_socket_get_portid(nl)), seq_(static_cast<uint32_t>(time(nullptr))) {
  buf_.resize(kRecvBuffer);
}

CtSocket::~CtSocket() {
  mnl_socket_close(nl_);
}

int CtSocket::dump(const DumpFilter& f, const ChunkFn& onChunk, const StopFn& stop) {
  char req[MNL_SOCKET_BUFFER_SIZE];
  const uint32_t seq = ++seq_;
  nlmsghdr* nlh = putHeader(req, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, f.family);
  if (f.proto) {
    CtPtr ct(nfct_new());
    if (!ct) return ENOMEM;
    const uint8_t af = afOf(f.family);
    uint32_t origFlags = kFilterProtoNum, replyFlags = 0;
    nfct_set_attr_u8(ct.get(), ATTR_ORIG_L3PROTO, af);
    nfct_set_attr_u8(ct.get(), ATTR_ORIG_L4PROTO, f.proto);
    // The kernel's IPv6 address comparison in CTA_FILTER is inverted (it keeps the flows whose
    // address differs), so IPv6 flows are filtered in the kernel by ports only; every flow is
    // checked again in userspace anyway.
    const bool addrFilter = f.family == IpFamily::V4;
    if (f.origDst && addrFilter) {
      setAddr(ct.get(), *f.origDst, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
      origFlags |= kFilterIpDst;
    }
    if (f.origDport) {
      nfct_set_attr_u16(ct.get(), ATTR_ORIG_PORT_DST, htons(*f.origDport));
      origFlags |= kFilterDstPort;
    }
    if (f.replySrc || f.replySport) {
      nfct_set_attr_u8(ct.get(), ATTR_REPL_L3PROTO, af);
      nfct_set_attr_u8(ct.get(), ATTR_REPL_L4PROTO, f.proto);
      replyFlags |= kFilterProtoNum;
      if (f.replySrc && addrFilter) {
        setAddr(ct.get(), *f.replySrc, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
        replyFlags |= kFilterIpSrc;
      }
      if (f.replySport) {
        nfct_set_attr_u16(ct.get(), ATTR_REPL_PORT_SRC, htons(*f.replySport));
        replyFlags |= kFilterSrcPort;
      }
    }
    if (nfct_nlmsg_build(nlh, ct.get()) < 0) return errno ? errno : EINVAL;
    nlattr* nest = mnl_attr_nest_start(nlh, CTA_FILTER);
    mnl_attr_put_u32(nlh, CTA_FILTER_ORIG_FLAGS, origFlags);
    if (replyFlags) mnl_attr_put_u32(nlh, CTA_FILTER_REPLY_FLAGS, replyFlags);
    mnl_attr_nest_end(nlh, nest);
  }
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return errno;

  DumpContext ctx;
  ctx.flows.reserve(256);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf_.data(), buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    ctx.flows.clear();
    int ret = mnl_cb_run(buf_.data(), static_cast<size_t>(n), seq, portid_, onDumpMessage, &ctx);
    const int err = ret < 0 ? errno : 0;
    if (!ctx.flows.empty()) onChunk(ctx.flows);
    if (ret < 0) return err ? err : EIO;
    if (ret == MNL_CB_STOP) return 0;
    if (stop && stop()) {
      // The kernel still holds the rest of the dump for this socket: only a new socket is
      // clean, so the caller must not reuse this one.
      return ECANCELED;
    }
  }
}

int CtSocket::deleteFlows(std::span<const Flow* const> flows, std::vector<int>& result) {
  if (proxier::faultsArmed()) [[unlikely]]
    return deleteWithFaults(flows, result);
  return batch(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, flows, 0, result);
}

// Test hook (proxier/core/injected_faults.h): the deletes a fault hits never reach the kernel
// and fail with its errno; the others are sent as usual.
int CtSocket::deleteWithFaults(std::span<const Flow* const> flows, std::vector<int>& result) {
  result.assign(flows.size(), 0);
  std::vector<const Flow*> sent;
  std::vector<size_t> where;
  for (size_t i = 0; i < flows.size(); ++i) {
    if (int err = proxier::injectedFault(proxier::FaultPoint::ConntrackDelete)) {
      result[i] = err;
    } else {
      sent.push_back(flows[i]);
      where.push_back(i);
    }
  }
  std::vector<int> sentResult;
  const int err = batch(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, sent, 0, sentResult);
  for (size_t j = 0; j < where.size() && j < sentResult.size(); ++j)
    result[where[j]] = sentResult[j];
  return err;
}

int CtSocket::insertFlows(std::span<const Flow* const> flows, uint32_t timeoutSeconds,
                          std::vector<int>& result) {
  return batch(IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, flows, timeoutSeconds,
               result);
}

int CtSocket::lookupFlows(std::span<const Flow* const> flows, std::vector<Flow>& found) {
  std::vector<int> result;
  return batch(IPCTNL_MSG_CT_GET, NLM_F_REQUEST, flows, 0, result, &found);
}

int CtSocket::batch(uint16_t msgType, uint16_t flags, std::span<const Flow* const> flows,
                    uint32_t timeoutSeconds, std::vector<int>& result, std::vector<Flow>* found) {
  result.assign(flows.size(), 0);
  if (flows.empty()) return 0;
  if (flows.size() > kMaxBatch) return E2BIG;
  const bool create = msgType == IPCTNL_MSG_CT_NEW;
  // At most ~230 bytes per IPv6 message (both tuples when creating); 512 of them stay well
  // under the socket's send buffer.
  std::vector<char> out(flows.size() * 256);
  size_t used = 0;
  const uint32_t base = seq_ + 1;
  seq_ += static_cast<uint32_t>(flows.size());
  for (size_t i = 0; i < flows.size(); ++i) {
    const Flow& f = *flows[i];
    // Only failures are reported, plus an ack for the last message: the kernel handles the
    // batch in order, so that ack means every failure before it has been queued too.
    const uint16_t msgFlags = i + 1 == flows.size() ? flags | NLM_F_ACK : flags;
    nlmsghdr* nlh =
        putHeader(out.data() + used, msgType, msgFlags, base + static_cast<uint32_t>(i), f.family);
    CtPtr ct(nfct_new());
    if (!ct) return ENOMEM;
    nfct_set_attr_u8(ct.get(), ATTR_ORIG_L3PROTO, afOf(f.family));
    nfct_set_attr_u8(ct.get(), ATTR_ORIG_L4PROTO, f.proto);
    setAddr(ct.get(), f.orig.src, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
    setAddr(ct.get(), f.orig.dst, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
    nfct_set_attr_u16(ct.get(), ATTR_ORIG_PORT_SRC, htons(f.orig.sport));
    nfct_set_attr_u16(ct.get(), ATTR_ORIG_PORT_DST, htons(f.orig.dport));
    if (create) {
      nfct_set_attr_u8(ct.get(), ATTR_REPL_L3PROTO, afOf(f.family));
      nfct_set_attr_u8(ct.get(), ATTR_REPL_L4PROTO, f.proto);
      setAddr(ct.get(), f.reply.src, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
      setAddr(ct.get(), f.reply.dst, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST);
      nfct_set_attr_u16(ct.get(), ATTR_REPL_PORT_SRC, htons(f.reply.sport));
      nfct_set_attr_u16(ct.get(), ATTR_REPL_PORT_DST, htons(f.reply.dport));
      nfct_set_attr_u32(ct.get(), ATTR_TIMEOUT, timeoutSeconds);
    }
    if (f.hasZone) nfct_set_attr_u16(ct.get(), ATTR_ZONE, f.zone);
    if (nfct_nlmsg_build(nlh, ct.get()) < 0) return errno ? errno : EINVAL;
    // libnetfilter_conntrack reads CTA_ID with ntohl; put it back the way the kernel sent it.
    if (msgType == IPCTNL_MSG_CT_DELETE && f.id) mnl_attr_put_u32(nlh, CTA_ID, htonl(f.id));
    used += MNL_ALIGN(nlh->nlmsg_len);
  }
  if (mnl_socket_sendto(nl_, out.data(), used) < 0) return errno;

  const uint32_t last = base + static_cast<uint32_t>(flows.size()) - 1;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf_.data(), buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      // ENOBUFS: failures were lost, so which flows failed is unknown; EAGAIN: no answer.
      const int err = errno;
      for (auto& r : result) {
        if (r == 0) r = err;
      }
      return err;
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) {
        if (found) {
          DumpContext ctx;
          onDumpMessage(nlh, &ctx);
          found->insert(found->end(), ctx.flows.begin(), ctx.flows.end());
        }
        continue;
      }
      const uint32_t idx = nlh->nlmsg_seq - base;
      if (idx >= flows.size()) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      result[idx] = -err->error;
      if (nlh->nlmsg_seq == last) return 0;
    }
  }
}

}  // namespace sliceproxy::conntrack
