#pragma once
// The node's own addresses that lie in some of a list of CIDRs, read from the interfaces once
// (kube-proxy's health check servers do the same at start with --nodeport-addresses).

#include <string>
#include <vector>

#include "proxier/model/ip.h"

namespace sliceproxy::proxier {

// Addresses of this host's interfaces inside `cidrs`, as listen hosts; sets `error` when the
// interfaces cannot be read.
std::vector<std::string> localAddressesIn(const std::vector<Cidr>& cidrs, std::string& error);

}  // namespace sliceproxy::proxier
