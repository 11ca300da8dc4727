#pragma once
// The nftables side of kube-proxy's leftovers: its nftables-mode tables (`ip kube-proxy`,
// `ip6 kube-proxy`), and the list of tables the iptables part needs to know which iptables-nft
// tables exist.

#include <cstdint>
#include <string>
#include <vector>

namespace sliceproxy::proxier::kube_proxy_cleanup {

inline constexpr const char* kKubeProxyNftTable = "kube-proxy";

struct NftTable {
  uint16_t family;  // NFPROTO_*
  std::string name;
};

// Every nftables table in this network namespace. Returns the errno on failure.
int listNftTables(std::vector<NftTable>& out);

// How many chains and sets (maps included) table `name` of `family` holds. Returns the errno.
int countNftObjects(uint16_t family, const std::string& name, size_t& chains, size_t& sets);

// Deletes the table and everything in it in one transaction; "" or what failed.
std::string deleteNftTable(uint16_t family, const std::string& name);

// "ip", "ip6", "inet", ...
std::string nftFamilyName(uint16_t family);

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
