// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftnl/transaction.h"

#include <fmt/format.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace sliceproxy::backends::nft {

namespace {
constexpr uint32_t kPageSize = 1 << 20;
constexpr uint32_t kOverrun = 1 << 18;  // one message never exceeds this
constexpr size_t kElemsPerMessage = 512;
}  // namespace

Socket::Socket() : seq_(static_cast<uint32_t>(time(nullptr))) {
  nl_ = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl_)
    throw std::runtime_error(
        fmt::format("opening a netfilter netlink socket: {}", strerror(errno)));
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(nl_);
    throw std::runtime_error(fmt::format("binding the netfilter netlink socket: {}", strerror(e)));
  }
  portId_ = mnl_socket_get_portid(nl_);
  reserve(4 << 20);
}

Socket::~Socket() {
  if (nl_) mnl_socket_close(nl_);
}

void Socket::drain() {
  char buf[8192];
  while (recv(mnl_socket_get_fd(nl_), buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
}

std::string Socket::dump(uint16_t type, uint16_t family,
                         const std::function<void(nlmsghdr*)>& build, mnl_cb_t cb, void* data) {
  std::vector<char> buf(1 << 17);
  drain();
  const uint32_t seq = nextSeq();
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), type, family, NLM_F_DUMP, seq);
  if (build) build(nlh);
  auto fail = [](const char* step) { return fmt::format("{}: {}", step, strerror(errno)); };
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return fail("sending");
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) return fail("receiving");
    int r = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq, portId_, cb, data);
    if (r < 0) return fail("parsing");
    if (r == MNL_CB_STOP) return "";
  }
}

void Socket::reserve(size_t bytes) {
  if (bytes <= reserved_) return;
  // FORCE variants ignore net.core.[rw]mem_max; we run with CAP_NET_ADMIN.
  int size = static_cast<int>(std::min<size_t>(bytes, 1u << 30));
  setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
  setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
  reserved_ = bytes;
}

void Socket::shrinkReceiveBuffer() {
  int size = 0;
  setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
  reserved_ = 0;
}

namespace {

// The identity every message about a table, chain or set carries.
nftnl_table* tableObj(const std::string& table, uint16_t family) {
  nftnl_table* t = nftnl_table_alloc();
  nftnl_table_set_str(t, NFTNL_TABLE_NAME, table.c_str());
  nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, family);
  return t;
}

nftnl_chain* chainObj(const std::string& table, const std::string& chain, uint16_t family) {
  nftnl_chain* c = nftnl_chain_alloc();
  nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table.c_str());
  nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, chain.c_str());
  nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, family);
  return c;
}

nftnl_set* setObj(const std::string& table, const std::string& set, uint16_t family) {
  nftnl_set* s = nftnl_set_alloc();
  nftnl_set_set_str(s, NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(s, NFTNL_SET_NAME, set.c_str());
  nftnl_set_set_u32(s, NFTNL_SET_FAMILY, family);
  return s;
}

}  // namespace

Transaction::Transaction(Socket& sock, uint16_t family)
    : sock_(sock), family_(family), batch_(nftnl_batch_alloc(kPageSize, kOverrun)) {
  firstSeq_ = sock_.nextSeq();
  nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(batch_)), firstSeq_);
  next();
}

Transaction::~Transaction() {
  nftnl_batch_free(batch_);
}

void Transaction::next() {
  const uint32_t len = last_ ? last_->nlmsg_len : 0;
  if (nftnl_batch_update(batch_) < 0) throw std::runtime_error("nftables batch: out of memory");
  // A message that overflows its page is copied to the start of a new one: wherever it is, it
  // ends where the batch's free space begins.
  if (last_) {
    last_ = reinterpret_cast<nlmsghdr*>(static_cast<char*>(nftnl_batch_buffer(batch_)) - len);
  }
}

nlmsghdr* Transaction::header(uint16_t type, uint16_t flags, std::string what) {
  uint32_t seq = sock_.nextSeq();
  descriptions_.push_back(std::move(what));
  // Only the last message asks for an acknowledgement (see commit()); failures are reported
  // for every message anyway.
  last_ = nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(batch_)), type, family_,
                                flags, seq);
  return last_;
}

void Transaction::addTable(const std::string& table) {
  nftnl_table* t = tableObj(table, family_);
  auto* nlh = header(NFT_MSG_NEWTABLE, NLM_F_CREATE, "table " + table);
  nftnl_table_nlmsg_build_payload(nlh, t);
  nftnl_table_free(t);
  next();
}

void Transaction::deleteTable(const std::string& table, std::string what) {
  nftnl_table* t = tableObj(table, family_);
  auto* nlh = header(NFT_MSG_DELTABLE, 0, std::move(what));
  nftnl_table_nlmsg_build_payload(nlh, t);
  nftnl_table_free(t);
  next();
}

void Transaction::addChain(const std::string& table, const std::string& chain, const Hook* hook) {
  nftnl_chain* c = chainObj(table, chain, family_);
  if (hook) {
    nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, hook->type);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook->hooknum);
    nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, hook->priority);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
  }
  auto* nlh = header(NFT_MSG_NEWCHAIN, NLM_F_CREATE, "chain " + chain);
  nftnl_chain_nlmsg_build_payload(nlh, c);
  nftnl_chain_free(c);
  next();
}

void Transaction::flushChain(const std::string& table, const std::string& chain) {
  nftnl_rule* r = nftnl_rule_alloc();
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, family_);
  auto* nlh = header(NFT_MSG_DELRULE, 0, "flushing chain " + chain);
  nftnl_rule_nlmsg_build_payload(nlh, r);
  nftnl_rule_free(r);
  next();
}

void Transaction::deleteChain(const std::string& table, const std::string& chain) {
  nftnl_chain* c = chainObj(table, chain, family_);
  auto* nlh = header(NFT_MSG_DELCHAIN, 0, "deleting chain " + chain);
  nftnl_chain_nlmsg_build_payload(nlh, c);
  nftnl_chain_free(c);
  next();
}

void Transaction::addRule(const std::string& table, const std::string& chain, nftnl_rule* r,
                          std::string what, uint64_t* handle) {
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, family_);
  auto* nlh = header(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | (handle ? NLM_F_ECHO : 0),
                     fmt::format("rule in chain {} ({})", chain, what));
  if (handle) echoes_.emplace_back(nlh->nlmsg_seq, handle);
  nftnl_rule_nlmsg_build_payload(nlh, r);
  nftnl_rule_free(r);
  next();
}

void Transaction::deleteRule(const std::string& table, const std::string& chain, uint64_t handle,
                             std::string what) {
  nftnl_rule* r = nftnl_rule_alloc();
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, family_);
  nftnl_rule_set_u64(r, NFTNL_RULE_HANDLE, handle);
  auto* nlh = header(NFT_MSG_DELRULE, 0,
                     fmt::format("deleting rule {} in chain {} ({})", handle, chain, what));
  nftnl_rule_nlmsg_build_payload(nlh, r);
  nftnl_rule_free(r);
  next();
}

void Transaction::addSet(const std::string& table, nftnl_set* s, std::string what) {
  nftnl_set_set_str(s, NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_u32(s, NFTNL_SET_FAMILY, family_);
  // The kernel requires a transaction-unique id for every new set.
  nftnl_set_set_u32(s, NFTNL_SET_ID, ++setIds_);
  auto* nlh = header(NFT_MSG_NEWSET, NLM_F_CREATE, std::move(what));
  nftnl_set_nlmsg_build_payload(nlh, s);
  nftnl_set_free(s);
  next();
}

void Transaction::elements(uint16_t type, uint16_t flags, const std::string& table,
                           const std::string& set, std::vector<nftnl_set_elem*>& elems,
                           const std::string& what) {
  size_t i = 0;
  while (i < elems.size()) {
    nftnl_set* s = setObj(table, set, family_);
    size_t end = std::min(elems.size(), i + kElemsPerMessage);
    for (; i < end; ++i) nftnl_set_elem_add(s, elems[i]);
    auto* nlh = header(type, flags,
                       fmt::format("{} elements of {} ({})",
                                   type == NFT_MSG_NEWSETELEM ? "adding" : "deleting", set, what));
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);  // frees the elements it holds
    next();
  }
  elems.clear();
}

void Transaction::addElements(const std::string& table, const std::string& set,
                              std::vector<nftnl_set_elem*>& elems, std::string what) {
  elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, set, elems, what);
}

void Transaction::deleteElements(const std::string& table, const std::string& set,
                                 std::vector<nftnl_set_elem*>& elems, std::string what) {
  elements(NFT_MSG_DELSETELEM, 0, table, set, elems, what);
}

void Transaction::flushSet(const std::string& table, const std::string& set) {
  nftnl_set* s = setObj(table, set, family_);
  auto* nlh = header(NFT_MSG_DELSETELEM, 0, "flushing set " + set);
  nftnl_set_elems_nlmsg_build_payload(nlh, s);
  nftnl_set_free(s);
  next();
}

void Transaction::deleteSet(const std::string& table, const std::string& set) {
  nftnl_set* s = setObj(table, set, family_);
  auto* nlh = header(NFT_MSG_DELSET, 0, "deleting set " + set);
  nftnl_set_nlmsg_build_payload(nlh, s);
  nftnl_set_free(s);
  next();
}

void Transaction::failAtEnd(int err) {
  // A table by a name nobody uses: the kernel answers ENOENT, after every earlier message.
  const std::string after = descriptions_.empty() ? "nothing" : descriptions_.back();
  deleteTable("sliceproxy-injected-fault", "");
  descriptions_.back() = fmt::format("the batch (injected fault after {})", after);
  injectedSeq_ = last_->nlmsg_seq;
  injectedErr_ = err;
}

namespace {

struct AckState {
  uint32_t firstSeq;
  size_t expected;
  size_t received = 0;
  std::vector<std::pair<uint32_t, int>> errors;
  const std::vector<std::pair<uint32_t, uint64_t*>>* echoes = nullptr;
  uint32_t injectedSeq = 0;
  int injectedErr = 0;
};

// A rule the kernel echoes back after the commit: its handle goes where addRule() was told.
int onEcho(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<AckState*>(data);
  if ((nlh->nlmsg_type & 0xff) != NFT_MSG_NEWRULE || !st->echoes) return MNL_CB_OK;
  auto it = std::lower_bound(st->echoes->begin(), st->echoes->end(),
                             std::make_pair(nlh->nlmsg_seq, static_cast<uint64_t*>(nullptr)));
  if (it == st->echoes->end() || it->first != nlh->nlmsg_seq) return MNL_CB_OK;
  nftnl_rule* r = nftnl_rule_alloc();
  if (nftnl_rule_nlmsg_parse(nlh, r) == 0 && nftnl_rule_is_set(r, NFTNL_RULE_HANDLE)) {
    *it->second = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
  }
  nftnl_rule_free(r);
  return MNL_CB_OK;
}

int onError(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<AckState*>(data);
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  ++st->received;
  if (err->error != 0) {
    const int e =
        nlh->nlmsg_seq == st->injectedSeq && st->injectedSeq ? st->injectedErr : -err->error;
    st->errors.emplace_back(nlh->nlmsg_seq, e);
  }
  return MNL_CB_OK;
}

}  // namespace

CommitResult Transaction::commit() {
  CommitResult res;
  res.messages = descriptions_.size();
  if (descriptions_.empty()) return res;
  // One acknowledgement per message would be one socket buffer each in the receive queue: tens
  // of thousands of them overflow it (ENOBUFS). The kernel handles a batch in order and reports
  // every failure, so the last message's acknowledgement means every failure is queued.
  last_->nlmsg_flags |= NLM_F_ACK;
  nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(batch_)), sock_.nextSeq());
  last_ = nullptr;
  next();

  const int iovlen = nftnl_batch_iovec_len(batch_);
  std::vector<iovec> iov(iovlen);
  nftnl_batch_iovec(batch_, iov.data(), iovlen);
  for (const auto& v : iov) res.bytes += v.iov_len;
  // Room for the batch itself and for its acknowledgements (and echoed rules).
  sock_.reserve(res.bytes + (echoes_.empty() ? 0 : res.bytes) + (1 << 20));
  if (overrun_) {
    for (const auto& v : iov) {
      int len = static_cast<int>(v.iov_len);
      for (auto* nlh = static_cast<nlmsghdr*>(v.iov_base); mnl_nlmsg_ok(nlh, len);
           nlh = mnl_nlmsg_next(nlh, &len)) {
        if (nlh->nlmsg_seq != firstSeq_) nlh->nlmsg_flags |= NLM_F_ACK;
      }
    }
    sock_.shrinkReceiveBuffer();
  }
  // The hook's small buffer lasts this exchange only.
  struct Regrow {
    Socket& sock;
    bool on;
    size_t bytes;
    ~Regrow() {
      if (on) sock.reserve(bytes);
    }
  } regrow{sock_, overrun_, res.bytes + (1 << 20)};

  sock_.drain();
  sockaddr_nl snl{};
  snl.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &snl;
  msg.msg_namelen = sizeof(snl);
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  if (sendmsg(mnl_socket_get_fd(sock_.get()), &msg, 0) < 0) {
    res.ok = false;
    res.error = fmt::format("sending a {}-byte nftables batch of {} messages: {}", res.bytes,
                            res.messages, strerror(errno));
    return res;
  }

  // The kernel processes a batch synchronously inside sendmsg(), so every acknowledgement is
  // already queued: read until the queue is empty instead of waiting for a count that a failed
  // commit (acknowledged on the batch header) would never reach.
  AckState st{firstSeq_, 1, 0, {}, &echoes_, injectedSeq_, injectedErr_};
  mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
  ctl[NLMSG_ERROR] = onError;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = recv(mnl_socket_get_fd(sock_.get()), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      res.ok = false;
      if (errno == ENOBUFS) {
        // The kernel could not queue some of its answers: whether the batch was committed is
        // unknown, and so are the handles of echoed rules. The caller's next sync is a full
        // one, which replaces the tables whatever this one did.
        res.error = fmt::format(
            "reading the kernel's answers to a batch of {} messages: {} (the socket's receive "
            "buffer overran; whether the batch was committed is unknown)",
            res.messages, strerror(errno));
      } else {
        res.error = fmt::format("reading nftables acknowledgements: {}", strerror(errno));
      }
      return res;
    }
    mnl_cb_run2(buf.data(), n, 0, sock_.portId(), echoes_.empty() ? nullptr : onEcho, &st, ctl,
                NLMSG_MIN_TYPE);
  }
  if (st.errors.empty() && st.received < st.expected) {
    res.ok = false;
    res.error = fmt::format("nftables did not acknowledge the batch of {} messages", res.messages);
    return res;
  }
  if (!st.errors.empty()) {
    res.ok = false;
    std::string out;
    for (size_t i = 0; i < st.errors.size() && i < 5; ++i) {
      auto [seq, err] = st.errors[i];
      size_t idx = seq - firstSeq_ - 1;
      const std::string what = seq == firstSeq_             ? std::string("the transaction commit")
                               : idx < descriptions_.size() ? descriptions_[idx]
                                                            : std::string("an unknown message");
      if (!out.empty()) out += "; ";
      out += fmt::format("programming {}: {}", what, strerror(err));
    }
    if (st.errors.size() > 5) out += fmt::format("; and {} more errors", st.errors.size() - 5);
    // nf_tables aborts a batch with any error as a whole.
    res.error =
        out + fmt::format("; the kernel applied none of the batch's {} messages", res.messages);
  }
  return res;
}

namespace {

int onTable(const nlmsghdr* nlh, void* data) {
  nftnl_table* t = nftnl_table_alloc();
  if (nftnl_table_nlmsg_parse(nlh, t) == 0) {
    static_cast<TableList*>(data)->names.emplace_back(nftnl_table_get_str(t, NFTNL_TABLE_NAME));
  }
  nftnl_table_free(t);
  return MNL_CB_OK;
}

}  // namespace

TableList listTables(Socket& sock, uint16_t family) {
  TableList out;
  if (auto err = sock.dump(NFT_MSG_GETTABLE, family, nullptr, onTable, &out); !err.empty()) {
    TableList f;
    f.ok = false;
    f.error = "listing the nftables tables (" + err + ")";
    return f;
  }
  return out;
}

}  // namespace sliceproxy::backends::nft
