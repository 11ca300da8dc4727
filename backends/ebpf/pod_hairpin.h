#pragma once
// kube-proxy's hairpin for the socket programs. A pod that reaches its own service must meet
// itself with another source address, or it would answer itself directly; a flow the socket
// programs rewrite to the pod's own address never leaves the pod, so nothing could masquerade
// it. So a pod that is a backend of a port keeps its flows to that port's ClusterIP
// untranslated at the socket (sp_hairpin: the pod's netns cookie x the port), and the packet
// path at the pod's interface picks the backend, SNATing a flow only when it lands on the pod
// itself (NP_F_POD_KEEPS_SOURCE). This keeps sp_hairpin equal to: for each port, the network
// namespaces that hold the addresses of its backends on this node.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "proxier/core/service_port_view.h"
#include "sock_lb_maps.h"

namespace sliceproxy::backends::ebpf {

class PodHairpin {
 public:
  // mapFd: sp_hairpin (pinned: what a previous run wrote stays until dropLeftovers()).
  // cgroupRoot: where the socket programs are attached; its processes' namespaces are the pods.
  PodHairpin(int mapFd, std::string cgroupRoot);
  // Finds again which namespace holds which address: a pod came, or took the address of one
  // that went. Returns "" or what could not be visited (the rest is still used).
  std::string rescan();
  // The port whose cluster-wide set id is setId now has these backends on this node; *any: some
  // of them are pods found by the last rescan (its ClusterIP frontend gets SP_SVC_F_HAIRPIN).
  std::string set(uint32_t setId, const std::set<proxier::EndpointKey>& local, bool* any);
  std::string drop(uint32_t setId);
  // Deletes what a previous run wrote and this one did not write again.
  std::string dropLeftovers();
  // Every pod address the last rescan found.
  std::vector<proxier::IpAddr> podAddresses() const;
  size_t entries() const;
  // Network namespaces the last rescan visited, and how long it took.
  size_t namespaces() const { return namespaces_; }
  double rescanMillis() const { return rescanMillis_; }

 private:
  int fd_;
  std::string root_;
  std::map<proxier::IpAddr, uint64_t> cookies_;
  std::map<uint32_t, std::set<uint64_t>> written_;  // set id -> netns cookies
  std::set<std::pair<uint32_t, uint64_t>> leftovers_;
  size_t namespaces_ = 0;
  double rescanMillis_ = 0;
};

}  // namespace sliceproxy::backends::ebpf
