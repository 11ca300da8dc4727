// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "proxier/cmd/kube_proxy_cleanup/kube_proxy_cleanup.h"

#include <fmt/format.h>
#include <linux/netfilter.h>

#include <ifaddrs.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "backends/ipvs/dummy_interface.h"
#include "proxier/cmd/kube_proxy_cleanup/dummy_link.h"
#include "proxier/cmd/kube_proxy_cleanup/iptables_plan.h"
#include "proxier/cmd/kube_proxy_cleanup/ipvs_services.h"
#include "proxier/cmd/kube_proxy_cleanup/nft_tables.h"
#include "proxier/cmd/kube_proxy_cleanup/tool_runner.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

namespace {

std::string firstLines(const std::string& text, size_t n = 3) {
  std::istringstream in(text);
  std::string line, out;
  for (size_t i = 0; i < n && std::getline(in, line);) {
    if (line.empty()) continue;
    if (!out.empty()) out += " / ";
    out += line;
    ++i;
  }
  return out.empty() ? "(no message)" : out;
}

// The tables an iptables-nft variant keeps in the kernel as nftables tables of the same name.
const std::set<std::string> kXtablesNames = {"filter", "nat", "mangle", "raw", "security"};

struct IptablesVariant {
  const char* label;    // "iptables-nft (IPv4)"
  const char* save;     // iptables-nft-save
  const char* restore;  // iptables-nft-restore
  bool legacy;
  uint16_t nfFamily;      // NFPROTO_IPV4 / NFPROTO_IPV6
  const char* procNames;  // legacy: the tables this netns has instantiated
};

constexpr IptablesVariant kVariants[] = {
    {"iptables-nft (IPv4)", "iptables-nft-save", "iptables-nft-restore", false, NFPROTO_IPV4, ""},
    {"iptables-nft (IPv6)", "ip6tables-nft-save", "ip6tables-nft-restore", false, NFPROTO_IPV6, ""},
    {"iptables-legacy (IPv4)", "iptables-legacy-save", "iptables-legacy-restore", true,
     NFPROTO_IPV4, "/proc/net/ip_tables_names"},
    {"iptables-legacy (IPv6)", "ip6tables-legacy-save", "ip6tables-legacy-restore", true,
     NFPROTO_IPV6, "/proc/net/ip6_tables_names"},
};

std::vector<std::string> presentTables(const IptablesVariant& v,
                                       const std::vector<NftTable>& nftTables) {
  std::vector<std::string> names;
  if (v.legacy) {
    // Reading the list never instantiates a table, unlike running the legacy tools.
    std::ifstream in(v.procNames);
    std::string name;
    while (in >> name) names.push_back(name);
  } else {
    for (const auto& t : nftTables) {
      if (t.family == v.nfFamily && kXtablesNames.contains(t.name)) names.push_back(t.name);
    }
  }
  return names;
}

void cleanIptables(const IptablesVariant& v, const std::vector<NftTable>& nftTables,
                   Report& report) {
  const auto tables = presentTables(v, nftTables);
  if (tables.empty()) {
    report.found.push_back(fmt::format("{}: no tables", v.label));
    return;
  }
  const std::string tableList = fmt::format("{}", fmt::join(tables, ", "));
  auto save = findTool(v.save), restore = findTool(v.restore);
  if (!save || !restore) {
    report.errors.push_back(fmt::format(
        "removing kube-proxy's {} chains: tables {} exist but {} is not installed, so they "
        "cannot be read; install iptables and run again",
        v.label, tableList, !save ? v.save : v.restore));
    return;
  }
  auto dump = runTool(*save, {});
  if (!dump.error.empty() || dump.exitCode != 0) {
    report.errors.push_back(fmt::format("reading the {} tables {} with {}: {}", v.label, tableList,
                                        *save,
                                        dump.error.empty() ? firstLines(dump.err) : dump.error));
    return;
  }
  std::string parseError;
  auto plans = planIptablesCleanup(dump.out, parseError);
  if (!parseError.empty()) {
    report.errors.push_back(fmt::format("reading the {} tables: {}", v.label, parseError));
    return;
  }
  if (plans.empty()) {
    report.found.push_back(fmt::format("{}: no kube-proxy chains in {}", v.label, tableList));
    return;
  }
  std::string script, what;
  for (const auto& p : plans) {
    script += p.restoreScript();
    if (!what.empty()) what += "; ";
    what += fmt::format("table {}: {} KUBE-* chains, {} rules jumping to them", p.table,
                        p.chains.size(), p.jumpRules.size());
  }
  std::vector<std::string> args = {"--noflush"};
  // The legacy tools share the kernel tables with the kubelet and other writers through
  // /run/xtables.lock; iptables-nft commits atomically and needs no lock.
  if (v.legacy) args.push_back("--wait=10");
  auto res = runTool(*restore, args, script);
  if (!res.error.empty() || res.exitCode != 0) {
    report.errors.push_back(fmt::format("removing kube-proxy's {} chains ({}): {} failed: {}",
                                        v.label, what, *restore,
                                        res.error.empty() ? firstLines(res.err) : res.error));
    return;
  }
  report.removed.push_back(fmt::format("{}: {}", v.label, what));
}

void cleanNftTables(const std::vector<NftTable>& tables, Report& report) {
  for (uint16_t family : {NFPROTO_IPV4, NFPROTO_IPV6}) {
    const std::string label =
        fmt::format("nftables table {} {}", nftFamilyName(family), kKubeProxyNftTable);
    bool present = false;
    for (const auto& t : tables) present |= t.family == family && t.name == kKubeProxyNftTable;
    if (!present) {
      report.found.push_back(label + ": absent");
      continue;
    }
    size_t chains = 0, sets = 0;
    if (int rc = countNftObjects(family, kKubeProxyNftTable, chains, sets); rc != 0) {
      report.errors.push_back(fmt::format("reading {}: {}", label, strerror(rc)));
      continue;
    }
    if (auto err = deleteNftTable(family, kKubeProxyNftTable); !err.empty()) {
      report.errors.push_back(fmt::format("removing {}: {}", label, err));
      continue;
    }
    report.removed.push_back(fmt::format("{} ({} chains, {} sets and maps)", label, chains, sets));
  }
}

bool findLinkExists(const char* name) {
  LinkInfo link;
  return findLink(name, link) == 0 && link.exists;
}

bool excluded(const IpvsService& svc, const Options& opts) {
  if (!svc.addr) return false;
  for (const auto& c : opts.ipvsExcludeCIDRs) {
    if (c.contains(*svc.addr)) return true;
  }
  return false;
}

// The addresses bound to link `name` (none when there is no such link).
std::set<IpAddr> linkAddresses(const char* name) {
  std::set<IpAddr> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || std::strcmp(i->ifa_name, name) != 0) continue;
    IpAddr a;
    if (i->ifa_addr->sa_family == AF_INET) {
      std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      a.family = IpFamily::V6;
      std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
    } else {
      continue;
    }
    out.insert(a);
  }
  freeifaddrs(list);
  return out;
}

// kube-proxy in IPVS mode treats every virtual service outside --ipvs-exclude-cidrs as its own
// (it deletes the ones it does not want on every sync), and always creates kube-ipvs0. So with
// kube-ipvs0 present the same rule applies here; without it, nothing says kube-proxy ran in IPVS
// mode on this node, and the services are left to whoever made them.
// Unless sliceproxy's own IPVS backend is here too (its link sliceproxy-ipvs exists): then only
// the services on kube-ipvs0's addresses are kube-proxy's for certain. Those on sliceproxy-ipvs are
// sliceproxy's, and those on node addresses (NodePorts) are adopted, and the unwanted ones
// deleted, by sliceproxy's own first full sync; removing them here would cut live traffic.
void cleanIpvs(const Options& opts, bool kubeIpvs0, Report& report) {
  Ipvs ipvs;
  if (int rc = ipvs.open(); rc != 0) {
    if (rc == ENOENT) {
      report.found.push_back("IPVS: no IPVS in this kernel");
    } else {
      report.errors.push_back(
          fmt::format("looking up the IPVS generic netlink family: {}", strerror(rc)));
    }
    return;
  }
  std::vector<IpvsService> services;
  if (int rc = ipvs.listServices(services); rc != 0) {
    report.errors.push_back(fmt::format("listing IPVS virtual services: {}", strerror(rc)));
    return;
  }
  if (services.empty()) {
    report.found.push_back("IPVS: no virtual services");
    return;
  }
  if (!kubeIpvs0 && !opts.ipvsWithoutKubeIpvs0) {
    report.found.push_back(fmt::format(
        "IPVS: {} virtual services left in place: there is no {} link, so kube-proxy did not run "
        "in IPVS mode here (--ipvs-without-kube-ipvs0 removes them anyway)",
        services.size(), kKubeIpvsLink));
    return;
  }
  const bool oursHere = findLinkExists(backends::ipvs::kDummyInterface);
  const auto kubeAddrs = linkAddresses(kKubeIpvsLink);
  const auto ourAddrs = linkAddresses(backends::ipvs::kDummyInterface);
  size_t removed = 0, kept = 0, ours = 0;
  for (const auto& svc : services) {
    if (excluded(svc, opts)) {
      ++kept;
      continue;
    }
    if (svc.addr && ourAddrs.count(*svc.addr)) {
      ++ours;
      continue;
    }
    if (oursHere && !(svc.addr && kubeAddrs.count(*svc.addr))) {
      ++ours;
      continue;
    }
    if (int rc = ipvs.deleteService(svc); rc != 0 && rc != ENOENT && rc != ESRCH) {
      report.errors.push_back(
          fmt::format("removing IPVS virtual service {}: {}", svc.str(), strerror(rc)));
      continue;
    }
    ++removed;
  }
  if (removed > 0) report.removed.push_back(fmt::format("IPVS: {} virtual services", removed));
  if (kept > 0) {
    report.found.push_back(
        fmt::format("IPVS: {} virtual services in --ipvs-exclude-cidrs left in place", kept));
  }
  if (ours > 0) {
    report.found.push_back(fmt::format(
        "IPVS: {} virtual services of sliceproxy's left in place (on its link {}, or, while that "
        "link exists, on addresses not on {}: sliceproxy adopts them)",
        ours, backends::ipvs::kDummyInterface, kKubeIpvsLink));
  }
}

void cleanKubeIpvs0(const LinkInfo& link, Report& report) {
  if (!link.exists) {
    report.found.push_back(fmt::format("link {}: absent", kKubeIpvsLink));
    return;
  }
  if (link.kind != "dummy") {
    report.found.push_back(
        fmt::format("link {} left in place: it is a {} device, not the dummy "
                    "kube-proxy creates",
                    kKubeIpvsLink, link.kind.empty() ? "kindless" : link.kind));
    return;
  }
  if (int rc = deleteLink(link.index); rc != 0) {
    report.errors.push_back(fmt::format("removing dummy link {}: {}", kKubeIpvsLink, strerror(rc)));
    return;
  }
  report.removed.push_back(fmt::format("dummy link {}", kKubeIpvsLink));
}

// After the iptables rules that match on them are gone (a set in use cannot be destroyed).
void cleanIpsets(Report& report) {
  auto ipset = findTool("ipset");
  if (!ipset) {
    report.found.push_back("ipset: not installed, KUBE-* ipsets not checked");
    return;
  }
  // ip_set shows in /sys/module when built in (it has parameters) or loaded; without it there
  // are no sets and the tool could not open a session anyway.
  if (access("/sys/module/ip_set", F_OK) != 0) {
    report.found.push_back("ipset: not in this kernel");
    return;
  }
  auto list = runTool(*ipset, {"list", "-n"});
  if (!list.error.empty() || list.exitCode != 0) {
    report.errors.push_back(
        fmt::format("listing ipsets: {}", list.error.empty() ? firstLines(list.err) : list.error));
    return;
  }
  std::istringstream in(list.out);
  std::string name;
  std::vector<std::string> removed;
  while (in >> name) {
    if (name.rfind("KUBE-", 0) != 0) continue;
    auto res = runTool(*ipset, {"destroy", name});
    if (!res.error.empty() || res.exitCode != 0) {
      report.errors.push_back(fmt::format("removing ipset {}: {}", name,
                                          res.error.empty() ? firstLines(res.err) : res.error));
      continue;
    }
    removed.push_back(name);
  }
  if (removed.empty()) {
    report.found.push_back("ipset: no KUBE-* sets");
  } else {
    report.removed.push_back(
        fmt::format("ipset: {} KUBE-* sets ({})", removed.size(), fmt::join(removed, ", ")));
  }
}

}  // namespace

Report cleanupKubeProxy(const Options& opts) {
  Report report;
  std::vector<NftTable> tables;
  if (int rc = listNftTables(tables); rc == EPROTONOSUPPORT || rc == EOPNOTSUPP) {
    // Without nfnetlink or nf_tables there can be no nftables table, iptables-nft's included.
    report.found.push_back(fmt::format("nftables: not in this kernel ({})", strerror(rc)));
    for (const auto& v : kVariants) {
      if (v.legacy) cleanIptables(v, tables, report);
    }
  } else if (rc != 0) {
    report.errors.push_back(fmt::format("listing nftables tables: {}", strerror(rc)));
  } else {
    cleanNftTables(tables, report);
    for (const auto& v : kVariants) cleanIptables(v, tables, report);
  }
  cleanIpsets(report);

  LinkInfo link;
  if (int rc = findLink(kKubeIpvsLink, link); rc != 0) {
    report.errors.push_back(fmt::format("looking up link {}: {}", kKubeIpvsLink, strerror(rc)));
    return report;
  }
  const size_t errorsBefore = report.errors.size();
  cleanIpvs(opts, link.exists && link.kind == "dummy", report);
  // Only after the services: a failed IPVS removal keeps the evidence a second run relies on.
  if (report.errors.size() == errorsBefore) cleanKubeIpvs0(link, report);
  return report;
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
