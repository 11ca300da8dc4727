#pragma once
// One nftables transaction: netlink messages batched between BATCH_BEGIN and BATCH_END and
// committed atomically by the kernel. Every message remembers what it was programming, so a
// kernel error is reported as "programming <what>: <reason>".

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <cstdio>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sliceproxy::backends::nft {

// A base chain's hook; absent for regular chains.
struct Hook {
  const char* type;  // "nat" or "filter"
  uint32_t hooknum;  // NF_INET_*
  int32_t priority;
};

class Socket {
 public:
  Socket();
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  mnl_socket* get() const { return nl_; }
  uint32_t portId() const { return portId_; }
  // Grows both socket buffers to hold a batch of `bytes` and its acknowledgements.
  void reserve(size_t bytes);
  // Shrinks the receive buffer to the kernel's minimum (a test hook); reserve() grows it again.
  void shrinkReceiveBuffer();
  uint32_t nextSeq() { return seq_++; }
  // Discards whatever a failed exchange left queued (acknowledgements of a batch whose reading
  // stopped early), so the next request reads only its own answers.
  void drain();
  // Sends a dump request built by `build` (into the buffer, with this sequence number) and runs
  // `cb` on every answer. Returns "" or which step failed and why.
  std::string dump(uint16_t type, uint16_t family, const std::function<void(nlmsghdr*)>& build,
                   mnl_cb_t cb, void* data);

 private:
  mnl_socket* nl_ = nullptr;
  uint32_t portId_ = 0;
  uint32_t seq_;
  size_t reserved_ = 0;
};

struct CommitResult {
  bool ok = true;
  std::string error;
  size_t messages = 0;
  size_t bytes = 0;
};

// Names of the family's tables, or an error message.
struct TableList {
  bool ok = true;
  std::string error;
  std::vector<std::string> names;
};
TableList listTables(Socket& sock, uint16_t family);

class Transaction {
 public:
  Transaction(Socket& sock, uint16_t family);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void addTable(const std::string& table);
  void deleteTable(const std::string& table, std::string what);
  void addChain(const std::string& table, const std::string& chain, const Hook* hook = nullptr);
  void flushChain(const std::string& table, const std::string& chain);
  void deleteChain(const std::string& table, const std::string& chain);
  // Takes ownership of the rule; table, chain and family are set here. With `handle`, the
  // kernel's handle for the rule is written there once the transaction has committed (the
  // kernel echoes the rule), so that the rule can be deleted alone later.
  void addRule(const std::string& table, const std::string& chain, nftnl_rule* rule,
               std::string what, uint64_t* handle = nullptr);
  void deleteRule(const std::string& table, const std::string& chain, uint64_t handle,
                  std::string what);
  // Takes ownership of the set; table and family are set here.
  void addSet(const std::string& table, nftnl_set* set, std::string what);
  // Element changes for set `name`, split into messages of bounded size. The vector's elements
  // are consumed (ownership passes to the transaction).
  void addElements(const std::string& table, const std::string& set,
                   std::vector<nftnl_set_elem*>& elems, std::string what);
  void deleteElements(const std::string& table, const std::string& set,
                      std::vector<nftnl_set_elem*>& elems, std::string what);
  void flushSet(const std::string& table, const std::string& set);
  void deleteSet(const std::string& table, const std::string& set);

  size_t messages() const { return descriptions_.size(); }
  bool empty() const { return descriptions_.empty(); }
  CommitResult commit();

  // Test hooks (proxier/core/injected_faults.h), called just before commit().
  // The batch ends with a message the kernel refuses once it has processed every other one, so
  // it rolls the whole batch back; the refusal is reported as `err`.
  void failAtEnd(int err);
  // Every message asks for an acknowledgement and the socket's receive buffer is shrunk to
  // the minimum: the kernel commits the batch and overruns the socket (ENOBUFS on receive).
  void overrunAnswers() { overrun_ = true; }

 private:
  nlmsghdr* header(uint16_t type, uint16_t flags, std::string what);
  void next();
  void elements(uint16_t type, uint16_t flags, const std::string& table, const std::string& set,
                std::vector<nftnl_set_elem*>& elems, const std::string& what);

  Socket& sock_;
  uint16_t family_;
  nftnl_batch* batch_;
  uint32_t firstSeq_ = 0;
  nlmsghdr* last_ = nullptr;  // the latest message's header, still in the batch buffer
  uint32_t setIds_ = 0;
  std::vector<std::string> descriptions_;               // by seq - firstSeq_ - 1
  std::vector<std::pair<uint32_t, uint64_t*>> echoes_;  // rules whose handle is wanted, by seq
  uint32_t injectedSeq_ = 0;                            // failAtEnd()'s message
  int injectedErr_ = 0;
  bool overrun_ = false;
};

}  // namespace sliceproxy::backends::nft
