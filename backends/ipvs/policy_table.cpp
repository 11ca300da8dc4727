// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/ipvs/policy_table.h"

#include <linux/netfilter.h>

#include <algorithm>

#include "backends/nftnl/transaction.h"
#include "backends/node_policy/main_table.h"
#include "backends/node_policy/port_policy.h"
#include "backends/node_policy/port_tag.h"
#include "backends/node_policy/source_ranges.h"

namespace sliceproxy::backends::ipvs {

using nft::Elem;
using nft::kMainTableName;
using nft::Transaction;
using proxier::IpAddr;

namespace {

// Element changes grouped by set: one message per set and direction.
void emit(Transaction& tx, const std::vector<Elem>& elems, bool add, const char* what) {
  std::map<uint8_t, std::vector<nftnl_set_elem*>> bySet;
  for (const auto& e : elems)
    bySet[e.set].push_back(nft::makeElem(e.key, add ? &e.value : nullptr));
  for (auto& [set, batch] : bySet) {
    if (add) {
      tx.addElements(kMainTableName, nft::mainSetName(set), batch, what);
    } else {
      tx.deleteElements(kMainTableName, nft::mainSetName(set), batch, what);
    }
  }
}

void clusterIpElems(Transaction& tx, const std::vector<IpAddr>& addrs, bool add) {
  if (addrs.empty()) return;
  std::vector<nftnl_set_elem*> batch;
  for (const auto& a : addrs) batch.push_back(nft::makeElem(nft::clusterIpKey(a), nullptr));
  const char* set = nft::mainSetName(nft::kClusterIps);
  if (add) {
    tx.addElements(kMainTableName, set, batch, "clusterIPs");
  } else {
    tx.deleteElements(kMainTableName, set, batch, "clusterIPs gone");
  }
}

}  // namespace

PolicyTable::PolicyTable(const proxier::NetworkConfig& net, proxier::IpFamily family)
    : net_(net),
      family_(family),
      nfproto_(family == proxier::IpFamily::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6) {}
PolicyTable::~PolicyTable() = default;

nft::Socket& PolicyTable::sock() {
  if (!sock_) sock_ = std::make_unique<nft::Socket>();
  return *sock_;
}

void PolicyTable::setPort(const proxier::ServicePortView& v) {
  const auto& info = v.info();
  if (!info) return removePort(v.key());
  auto it = ports_.find(v.key());
  if (it != ports_.end() && it->second.info != info) {
    // Other settings: a new firewall chain under a new id, so the old one can go in the same
    // transaction.
    removePort(v.key());
    it = ports_.end();
  }
  if (it == ports_.end()) {
    Port p;
    p.id = nextId_++;
    p.info = info;
    p.fwChain = nft::firewallChainName(p.id, nft::portChainTag(*info), *info);
    if (!p.fwChain.empty()) newChains_.push_back(v.key());
    ++clusterDelta_[info->clusterIP];
    ++clusterRefs_[info->clusterIP];
    it = ports_.emplace(v.key(), std::move(p)).first;
  }
  Port& p = it->second;
  auto elems = nft::portPolicyElems(
      *info, {v.hasAnyEndpoints(), v.countOf(v.internalSet()), v.countOf(v.externalSet())},
      p.fwChain);
  for (const auto& e : p.elems) {
    if (std::find(elems.begin(), elems.end(), e) == elems.end()) del_.push_back(e);
  }
  for (const auto& e : elems) {
    if (std::find(p.elems.begin(), p.elems.end(), e) == p.elems.end()) add_.push_back(e);
  }
  p.elems = std::move(elems);
}

void PolicyTable::removePort(const proxier::ServicePortKey& key) {
  auto it = ports_.find(key);
  if (it == ports_.end()) return;
  Port& p = it->second;
  del_.insert(del_.end(), p.elems.begin(), p.elems.end());
  if (!p.fwChain.empty()) deadChains_.push_back(p.fwChain);
  std::erase(newChains_, key);
  --clusterDelta_[p.info->clusterIP];
  if (--clusterRefs_[p.info->clusterIP] <= 0) clusterRefs_.erase(p.info->clusterIP);
  ports_.erase(it);
}

std::string PolicyTable::commit(bool replace, const proxier::NodeContext* node) {
  const bool v4 = family_ == proxier::IpFamily::V4;
  std::vector<IpAddr> clusterAdd, clusterDel;
  for (const auto& [a, d] : clusterDelta_) {
    if (a.family != family_ || d == 0) continue;
    const bool now = clusterRefs_.count(a) > 0;
    if (now && d > 0 && clusterRefs_.at(a) == d) clusterAdd.push_back(a);
    if (!now && d < 0) clusterDel.push_back(a);
  }
  Transaction tx(sock(), nfproto_);
  if (replace || !built_) {
    // add, delete, add: replaces whatever a previous run (or backend) left in one step.
    tx.addTable(kMainTableName);
    tx.deleteTable(kMainTableName,
                   std::string("replacing table ") + (v4 ? "ip " : "ip6 ") + kMainTableName);
    tx.addTable(kMainTableName);
    nft::NodeFamily fam{family_, nfproto_, &net_};
    nft::buildMainTable(tx, fam, node, nft::MainTableParts{false, kLateInputPriority});
    std::vector<Elem> all;
    std::vector<IpAddr> clusterIps;
    for (const auto& [key, p] : ports_) {
      if (!p.fwChain.empty()) {
        tx.addChain(kMainTableName, p.fwChain);
        nft::addFirewallRules(tx, *p.info, p.fwChain);
      }
      all.insert(all.end(), p.elems.begin(), p.elems.end());
    }
    for (const auto& [a, n] : clusterRefs_) {
      if (a.family == family_) clusterIps.push_back(a);
    }
    emit(tx, all, true, "node policy of every service port");
    clusterIpElems(tx, clusterIps, true);
  } else {
    emit(tx, del_, false, "node policy no longer wanted");
    clusterIpElems(tx, clusterDel, false);
    for (const auto& c : deadChains_) {
      tx.flushChain(kMainTableName, c);
      tx.deleteChain(kMainTableName, c);
    }
    for (const auto& key : newChains_) {
      const Port& p = ports_.at(key);
      tx.addChain(kMainTableName, p.fwChain);
      nft::addFirewallRules(tx, *p.info, p.fwChain);
    }
    emit(tx, add_, true, "node policy");
    clusterIpElems(tx, clusterAdd, true);
  }
  del_.clear();
  add_.clear();
  deadChains_.clear();
  newChains_.clear();
  clusterDelta_.clear();
  if (tx.empty()) return "";
  auto res = tx.commit();
  if (!res.ok) {
    built_ = false;  // the next commit rebuilds the table from the mirror
    return std::string("node policy table ") + (v4 ? "ip " : "ip6 ") + kMainTableName + ": " +
           res.error;
  }
  built_ = true;
  return "";
}

std::string PolicyTable::remove() {
  ports_.clear();
  clusterRefs_.clear();
  del_.clear();
  add_.clear();
  deadChains_.clear();
  newChains_.clear();
  clusterDelta_.clear();
  built_ = false;
  auto tables = nft::listTables(sock(), nfproto_);
  if (!tables.ok) return tables.error;
  if (std::find(tables.names.begin(), tables.names.end(), kMainTableName) == tables.names.end()) {
    return "";
  }
  Transaction tx(sock(), nfproto_);
  tx.deleteTable(kMainTableName, std::string("removing table ") +
                                     (family_ == proxier::IpFamily::V4 ? "ip " : "ip6 ") +
                                     kMainTableName);
  auto res = tx.commit();
  return res.ok ? "" : res.error;
}

}  // namespace sliceproxy::backends::ipvs
