#pragma once
// Flows a data plane recorded as it translated them (client, frontend, endpoint), so that
// stale-flow cleanup can find the flows a removed endpoint answered without walking the kernel's
// whole conntrack table: a walk costs O(every flow of every namespace on the node), a lookup in
// the record O(translated UDP/SCTP flows of this node's services).

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "proxier/model/ip.h"

namespace sliceproxy::proxier {

struct RecordedFlow {
  IpFamily family = IpFamily::V4;
  uint8_t proto = 0;  // IPPROTO_UDP or IPPROTO_SCTP
  IpAddr client, frontend, endpoint;
  uint16_t clientPort = 0, frontendPort = 0, endpointPort = 0;  // host byte order
};

class FlowIndex {
 public:
  virtual ~FlowIndex() = default;
  enum class Coverage {
    Complete,    // every live translated UDP/SCTP flow of the family is in the record
    Incomplete,  // not seeded since it was created, or full: the caller must walk
    Error,       // the record could not be read (error says why)
  };
  // Streams the recorded flows of `family` whose endpoint satisfies `wanted`.
  virtual Coverage flowsAnsweredBy(IpFamily family,
                                   const std::function<bool(const IpAddr&)>& wanted,
                                   const std::function<void(const RecordedFlow&)>& fn,
                                   std::string& error) = 0;

  // Seeding. The record only sees flows that send a packet after it was created; flows that
  // existed before are found by walking the conntrack table once (the cleaner's sweep after
  // start), recording the translated ones, then marking the record complete for the generation
  // read before the walk. Re-creating the record (its table was removed) starts a generation.
  virtual uint64_t generation() const = 0;
  virtual bool needsSeed() const = 0;
  virtual void recordFlows(std::span<const RecordedFlow> flows, std::string& error) = 0;
  virtual void markSeeded(uint64_t generation) = 0;

  // How full the record is, for the metrics: flows in it and its capacity (known = false when
  // it could not be read).
  struct Fill {
    bool known = false;
    uint64_t flows = 0, capacity = 0;
  };
  virtual Fill fill() { return {}; }
};

}  // namespace sliceproxy::proxier
