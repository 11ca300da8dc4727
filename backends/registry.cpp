#include "backends/registry.h"

#include <iostream>
#include <stdexcept>

#include "backends/dryrun/dry_run_backend.h"
#include "backends/ebpf/ebpf_backend.h"
#include "backends/ebpf/kernel_probe.h"
#include "backends/ebpf/linux_capabilities.h"
#include "backends/ipvs/ipvs_backend.h"
#include "backends/ipvs/linux_capabilities.h"
#include "backends/nftables/kernel_probe.h"
#include "backends/nftables/linux_capabilities.h"
#include "backends/nftables/nftables_backend.h"
#include "backends/nftables/sctp_ports.h"

namespace sliceproxy::backends {

using proxier::BackendInfo;
using proxier::StaleFlowCleaner;

namespace {

const BackendInfo kBackends[] = {
    {
        .name = "nftables",
        .mode = "nftables",
        .summary = "nftables tables over netlink: verdict maps, endpoint maps, no chain per "
                   "endpoint",
        .cleaner = StaleFlowCleaner::Conntrack,
        .programsKernel = true,
        .capabilities = &nft::NftablesBackend::supported,
        .kernelSupport = &nft::kernelSupport,
        .linuxCapabilities = nft::kLinuxCapabilities,
        .make = [](const proxier::NetworkConfig& net) -> std::unique_ptr<proxier::Backend> {
          if (!net.devices.empty()) {
            throw std::invalid_argument("--devices: only the ebpf backend attaches to interfaces");
          }
          return std::make_unique<nft::NftablesBackend>(net);
        },
    },
    {
        .name = "ebpf",
        .mode = "ebpf",
        .summary = "socket load balancing in the client's kernel (cgroup connect/sendmsg/recvmsg/"
                   "getpeername programs, BPF maps) for traffic that starts on this node",
        .cleaner = StaleFlowCleaner::BackendSctpConntrack,
        .programsKernel = true,
        .capabilities = &ebpf::EbpfBackend::supported,
        .kernelSupport = &ebpf::kernelSupport,
        .linuxCapabilities = ebpf::kLinuxCapabilities,
        .make = [](const proxier::NetworkConfig& net) -> std::unique_ptr<proxier::Backend> {
          return std::make_unique<ebpf::EbpfBackend>(net, std::make_unique<nft::SctpPorts>(net));
        },
    },
    {
        .name = "ipvs",
        .mode = "ipvs",
        .summary = "IPVS virtual services over generic netlink, service addresses on the dummy "
                   "link sliceproxy-ipvs, masquerading in table ip sliceproxy-ipvs",
        .cleaner = StaleFlowCleaner::Conntrack,
        .programsKernel = true,
        .capabilities = &ipvs::IpvsBackend::supported,
        .kernelSupport = &ipvs::kernelSupport,
        .linuxCapabilities = ipvs::kLinuxCapabilities,
        .make = [](const proxier::NetworkConfig& net) -> std::unique_ptr<proxier::Backend> {
          return std::make_unique<ipvs::IpvsBackend>(net);
        },
    },
    {
        .name = "dry-run",
        .mode = "",
        .summary = "programs nothing; prints every change it would make as JSON lines on stdout",
        .cleaner = StaleFlowCleaner::None,
        .programsKernel = false,
        .capabilities = &DryRunBackend::supported,
        .kernelSupport = [] { return std::string(); },
        .linuxCapabilities = {},
        .make = [](const proxier::NetworkConfig&) -> std::unique_ptr<proxier::Backend> {
          return std::make_unique<DryRunBackend>(std::cout);
        },
    },
};

}  // namespace

proxier::BackendRegistry registry() {
  return kBackends;
}

}  // namespace sliceproxy::backends
