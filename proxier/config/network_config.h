#pragma once
// How this node's network looks to a backend: which traffic counts as local (and so is not
// masqueraded), which addresses accept NodePorts, and how to masquerade. Parsed and validated
// once from flags; backends encode it, they do not interpret flags themselves.

#include <optional>
#include <string>
#include <vector>

#include "proxier/model/ip.h"

namespace sliceproxy::proxier {

enum class LocalDetectMode : uint8_t {
  None,
  ClusterCIDR,
  NodeCIDR,
  InterfaceNamePrefix,
  BridgeInterface
};

const char* localDetectModeName(LocalDetectMode m);
std::optional<LocalDetectMode> parseLocalDetectMode(std::string_view s);

struct NetworkConfig {
  LocalDetectMode detectLocal = LocalDetectMode::None;
  std::vector<Cidr> clusterCIDRs;       // --cluster-cidr, one per family at most
  std::string podInterfacePrefix;       // --pod-interface-name-prefix
  std::string podBridgeInterface;       // --pod-bridge-interface
  bool masqueradeAll = false;           // --masquerade-all
  std::vector<IpAddr> snatAddresses;    // --snat-address: SNAT to these instead of MASQUERADE
  std::vector<Cidr> nodePortAddresses;  // --nodeport-addresses; empty = every local address
  bool nodePortPrimaryOnly = false;     // --nodeport-addresses=primary: NodeContext::primaryIps
  // --bind-address / bindAddress other than 0.0.0.0 and ::: this node's primary IP of its family.
  std::optional<IpAddr> nodeIpOverride;
  uint32_t masqueradeMark = 0x4000;  // bit --masquerade-bit (default 14)
  // The eBPF backend: the cgroup v2 directory its socket programs attach to ("" = the cgroup2
  // mount) and where it pins them, on a bpf filesystem.
  std::string cgroupRoot;                            // --cgroup-root
  std::string bpfPinDir = "/sys/fs/bpf/sliceproxy";  // --bpf-pin-dir
  // --sockmap-shortcut (ebpf only): same-node TCP payload goes socket to socket.
  bool sockmapShortcut = false;
  // --flow-record-max: capacity of the record of translated UDP/SCTP flows (0: no record).
  uint32_t flowRecordMax = 1u << 18;
  // --maglev-table-size: the eBPF backend's Maglev table size for a service with up to 1% as
  // many backends (a prime; bigger services step up, see backends/ebpf/maglev.h).
  uint32_t maglevTableSize = 16381;
  // --devices: the eBPF backend's NodePort load balancer attaches to these interfaces (none: off).
  std::vector<std::string> devices;
  // --enable-dsr (ebpf only): eTP Cluster traffic from outside is answered by the backend's node
  // directly (direct server return) instead of SNATed back through this one.
  bool directServerReturn = false;
  // The IPVS backend's scheduler (--ipvs-scheduler, else the config file's ipvs.scheduler):
  // rr, sh, mh or another the kernel has; "" means rr, kube-proxy's default.
  std::string ipvsScheduler;

  const IpAddr* snatAddress(IpFamily f) const;
  const Cidr* clusterCIDR(IpFamily f) const;
};

// --bind-address (kube-proxy's name for "this node's primary IP"): "" or an unspecified address
// leaves the Node's addresses alone. Returns an error naming the flag, or "".
std::string setNodeIpOverride(NetworkConfig& out, const std::string& bindAddress);

// Validates the flag values; returns an error message naming the flag, or "" when valid.
std::string buildNetworkConfig(NetworkConfig& out, const std::vector<std::string>& clusterCIDRs,
                               const std::string& detectLocalMode,
                               const std::vector<std::string>& snatAddresses,
                               const std::vector<std::string>& nodePortAddresses,
                               int masqueradeBit);

}  // namespace sliceproxy::proxier
