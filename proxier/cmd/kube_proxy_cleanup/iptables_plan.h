#pragma once
// What to remove from one iptables-save dump: kube-proxy's KUBE-* chains and every rule in a
// remaining chain that jumps to one of them, written as an iptables-restore --noflush script
// that touches nothing else.

#include <string>
#include <vector>

namespace sliceproxy::proxier::kube_proxy_cleanup {

// True for the chains kube-proxy creates (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, ...). The
// kubelet's own KUBE-* chains are not kube-proxy's and stay: the kubelet keeps running across
// the migration and would have to notice their loss to put them back.
bool isKubeProxyChain(const std::string& chain);

struct TablePlan {
  std::string table;                   // nat, filter, mangle, ...
  std::vector<std::string> chains;     // kube-proxy chains to flush and delete
  std::vector<std::string> jumpRules;  // "-A CHAIN ..." lines (as saved) to delete
  bool empty() const { return chains.empty() && jumpRules.empty(); }
  // The iptables-restore --noflush input for this table.
  std::string restoreScript() const;
};

// One plan per table of the dump that holds something to remove. A malformed dump (a rule
// outside a table) sets `error` and returns nothing.
std::vector<TablePlan> planIptablesCleanup(const std::string& saveOutput, std::string& error);

// A command line split as iptables-restore splits it: on blanks, double quotes grouping words.
std::vector<std::string> splitRuleWords(const std::string& line);

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
