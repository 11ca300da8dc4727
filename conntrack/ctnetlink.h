#pragma once
// A ctnetlink socket through libmnl + libnetfilter_conntrack: filtered dumps (the kernel applies
// CTA_FILTER to every entry, so only matching flows cross into userspace) and batched deletes
// (many IPCTNL_MSG_CT_DELETE messages in one sendmsg, one ack each).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "conntrack/flow.h"

struct mnl_socket;

namespace sliceproxy::conntrack {

struct DumpFilter {
  IpFamily family = IpFamily::V4;
  uint8_t proto = 0;  // 0: every protocol (no CTA_FILTER at all)
  std::optional<IpAddr> origDst;
  std::optional<uint16_t> origDport;
  std::optional<IpAddr> replySrc;
  std::optional<uint16_t> replySport;
  std::string str() const;
};

class CtSocket {
 public:
  // A socket in the caller's network namespace; null with `error` set on failure.
  static std::unique_ptr<CtSocket> open(std::string& error);
  ~CtSocket();
  CtSocket(const CtSocket&) = delete;
  CtSocket& operator=(const CtSocket&) = delete;

  using ChunkFn = std::function<void(std::span<const Flow>)>;
  using StopFn = std::function<bool()>;
  // Streams the flows that match `f` to `onChunk`, one call per message batch the kernel sends
  // (at most ~32 KiB of flows), so memory never grows with the table. Returns 0 or an errno;
  // ECANCELED when `stop` (checked between batches) said so.
  int dump(const DumpFilter& f, const ChunkFn& onChunk, const StopFn& stop = {});

  // Deletes the flows by original tuple, zone and id (a flow re-created since it was dumped has
  // another id and is left alone). result[i] gets 0 or the errno for flows[i]. At most
  // kMaxBatch flows per call. Returns 0 or the errno that failed the whole batch.
  static constexpr size_t kMaxBatch = 512;
  int deleteFlows(std::span<const Flow* const> flows, std::vector<int>& result);

  // Reads the current state of the flows with these original tuples (and zones): the ones that
  // exist are appended to `found`, with their ids and reply tuples. Same batching as deletes.
  int lookupFlows(std::span<const Flow* const> flows, std::vector<Flow>& found);

  // Creates the flows as given (both tuples, so a "translated" flow needs no NAT rule), for
  // tests and benchmarks that need a populated table. Same batching and results as deletes.
  int insertFlows(std::span<const Flow* const> flows, uint32_t timeoutSeconds,
                  std::vector<int>& result);

 private:
  explicit CtSocket(mnl_socket* nl);
  int deleteWithFaults(std::span<const Flow* const> flows, std::vector<int>& result);
  int batch(uint16_t msgType, uint16_t flags, std::span<const Flow* const> flows,
            uint32_t timeoutSeconds, std::vector<int>& result, std::vector<Flow>* found = nullptr);
  mnl_socket* nl_;
  uint32_t portid_;
  uint32_t seq_;
  std::vector<char> buf_;
};

}  // namespace sliceproxy::conntrack
