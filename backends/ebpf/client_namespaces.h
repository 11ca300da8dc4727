#pragma once
// The network namespaces of the processes the socket programs serve (every process in the
// cgroup tree under --cgroup-root): the stale-socket walk enters each, and the hairpin check
// needs to know which pod address lives in which (by netns cookie, what
// bpf_get_netns_cookie gives the socket programs).

#include <cstdint>
#include <string>
#include <vector>

#include "proxier/model/ip.h"

namespace sliceproxy::backends::ebpf {

// One open fd per distinct network namespace of the processes under `root` (at most 4096;
// `error` says when more were left out or a process's namespace could not be opened). The
// caller closes them.
std::vector<int> clientNamespaces(const std::string& root, std::string& error);

struct NamespaceAddresses {
  uint64_t cookie = 0;                     // SO_NETNS_COOKIE
  std::vector<proxier::IpAddr> addresses;  // its interfaces' addresses, loopback excepted
};

// The namespaces under `root` other than this process's own (the node's: host-network
// processes are the node, not pods), with their cookies and addresses.
std::vector<NamespaceAddresses> clientNamespaceAddresses(const std::string& root,
                                                         std::string& error);

}  // namespace sliceproxy::backends::ebpf
