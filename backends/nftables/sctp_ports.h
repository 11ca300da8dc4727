#pragma once
// SCTP service ports of another backend, served by the nftables data plane: the eBPF
// backend's (EbpfBackend takes one as the backend of its SCTP ports). Neither eBPF path
// can translate SCTP well: the socket programs would rewrite the first address of a multihomed
// association only, and the packet path would have to recompute a CRC32c over the whole packet
// for every port it rewrites (SCTP's checksum is no one's-complement sum that a helper can
// patch); netfilter's SCTP NAT does both. So SCTP ports are handed to an embedded
// NftablesBackend, whose tables exist only while some SCTP port does (no netfilter hook for
// TCP and UDP to cross otherwise). The socket programs and the packet path pass SCTP untouched,
// so the two never meet.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/nftables/nftables_backend.h"
#include "proxier/core/backend.h"

namespace sliceproxy::backends::nft {

inline bool isSctp(const proxier::ServicePortKey& key) {
  return key.port.protocol == proxier::Protocol::SCTP;
}

class SctpPorts : public proxier::Backend {
 public:
  explicit SctpPorts(const proxier::NetworkConfig& net);
  std::string name() const override { return "nftables (SCTP ports)"; }
  proxier::Capabilities capabilities() const override { return NftablesBackend::supported(); }
  // The SCTP part of the diff (other ports are ignored); the first SCTP port creates the
  // tables, the last removes them.
  proxier::BackendResult apply(const proxier::Diff& diff) override;
  // The SCTP ports of the state; none: removes what this or a previous run left.
  proxier::BackendResult fullSync(const proxier::State& state) override;
  proxier::BackendResult cleanup() override;
  std::string drift() override;
  std::shared_ptr<proxier::FlowIndex> flowIndex() override { return nft_.flowIndex(); }
  std::vector<std::string> kernelObjects(const proxier::ServicePortKey& key) const override;
  size_t ports() const { return ports_.size(); }

 private:
  proxier::BackendResult programAll(const proxier::NodeContext* node);
  NftablesBackend nft_;
  // The views stay at one address until the proxier deletes the port.
  std::map<proxier::ServicePortKey, const proxier::ServicePortView*> ports_;
  bool programmed_ = false;  // the tables hold ports_
};

}  // namespace sliceproxy::backends::nft
