#pragma once
// Destroys the sockets the socket programs pointed at backends that have left their service:
// connected UDP sockets and TCP sockets still connecting (BPF socket iterators calling
// bpf_sock_destroy, kernel 6.5+). Iterators walk one network namespace, the caller's, so this
// visits every namespace of the processes in the cgroup the programs are attached to.

#include <cstdint>
#include <string>
#include <vector>

#include "backends/ebpf/sock_lb_loader.h"
#include "sock_lb_maps.h"

namespace sliceproxy::backends::ebpf {

struct StaleSocketReport {
  uint64_t destroyed = 0;
  uint32_t namespaces = 0;
  std::string error;  // "" when every namespace was walked
};

StaleSocketReport destroyStaleSockets(SockLbPrograms& progs, const std::vector<sp_backend>& gone);

}  // namespace sliceproxy::backends::ebpf
