#include "backends/ebpf/nodeport_path.h"

#include <bpf/bpf.h>
#include <fmt/ranges.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace sliceproxy::backends::ebpf {

using proxier::IpAddr;
using proxier::IpFamily;

std::vector<IpAddr> deviceAddresses(const std::vector<std::string>& devices,
                                    const std::vector<proxier::Cidr>& filter) {
  const bool every = devices.empty();
  for (const auto& d : devices) {
    if (if_nametoindex(d.c_str()) == 0)
      throw std::runtime_error("--devices " + d + ": no such interface");
  }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) throw std::runtime_error("--devices: listing addresses failed");
  std::vector<IpAddr> out;
  // In the order given: the first device's come first. No devices: every interface's.
  const std::vector<std::string> all{""};
  for (const std::string& dev : every ? all : devices) {
    for (ifaddrs* a = list; a; a = a->ifa_next) {
      if (!a->ifa_addr || (!every && dev != a->ifa_name)) continue;
      IpAddr ip;
      if (a->ifa_addr->sa_family == AF_INET) {
        std::memcpy(ip.bytes.data(), &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, 4);
        ip.family = IpFamily::V4;
      } else if (a->ifa_addr->sa_family == AF_INET6) {
        const auto* s6 = reinterpret_cast<sockaddr_in6*>(a->ifa_addr);
        if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr)) continue;
        std::memcpy(ip.bytes.data(), &s6->sin6_addr, 16);
        ip.family = IpFamily::V6;
      } else {
        continue;
      }
      const bool loopback = ip.isV4() ? ip.bytes[0] == 127
                                      : (std::all_of(ip.bytes.begin(), ip.bytes.end() - 1,
                                                     [](uint8_t b) { return b == 0; }) &&
                                         ip.bytes[15] == 1);
      if (loopback) continue;  // kube-proxy does not answer NodePorts on localhost either
      const bool kept =
          filter.empty() ||
          std::any_of(filter.begin(), filter.end(), [&](const auto& c) { return c.contains(ip); });
      if (kept && std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
    }
  }
  freeifaddrs(list);
  return out;
}

NodePortPath::NodePortPath(const proxier::NetworkConfig& net) {
  for (const std::string& d : net.devices) {
    if (d == "+") {
      every_ = true;  // the default: every interface, its addresses the node's
      prefixes_.push_back("");
    } else if (d.size() > 1 && d.back() == '+') {
      prefixes_.push_back(d.substr(0, d.size() - 1));
    } else {
      exact_.push_back(d);
    }
  }
  // primary: the node's primary IPs arrive with the Node object, after the programs are
  // loaded; followNode() sets them.
  primaryOnly_ = net.nodePortPrimaryOnly;
  dsr_ = net.directServerReturn;
  const std::vector<std::string> named = every_ ? std::vector<std::string>{} : exact_;
  if (!primaryOnly_) addresses_ = deviceAddresses(named, net.nodePortAddresses);
  // The SNAT default: the first device's own first address of the family, whatever
  // --nodeport-addresses keeps (an extra NodePort address is no source for masquerading).
  const std::vector<IpAddr> all = deviceAddresses(named, {});
  NodePortOptions opts;
  opts.pinDir = net.bpfPinDir;
  progs_ = std::make_unique<NodePortPrograms>(opts);
  for (const std::string& m : progs_->recreatedMaps()) {
    spdlog::warn("ebpf: pinned map {}: created anew, its entries lost", m);
  }
  for (IpFamily f : {IpFamily::V4, IpFamily::V6}) {
    const IpAddr* snat = net.snatAddress(f);
    if (!snat) {
      auto it =
          std::find_if(all.begin(), all.end(), [&](const IpAddr& a) { return a.family == f; });
      if (it != all.end()) snat = &*it;
    }
    np_snat s{};  // none: all zero, SNAT off for the family (a previous run's address goes)
    if (snat) {
      std::memcpy(s.addr, snat->bytes.data(), snat->size());
      s.port_min = kSnatPortMin;
      s.port_max = kSnatPortMax;
    }
    progs_->setSnat(f == IpFamily::V4 ? NP_FAMILY_V4 : NP_FAMILY_V6, s);
  }
  std::vector<np_local_key> local;
  for (const IpAddr& a : all) {
    np_local_key k{};
    std::memcpy(k.addr, a.bytes.data(), a.size());
    k.family = a.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
    local.push_back(k);
  }
  progs_->setLocalAddresses(local);
  if (every_ || std::find(exact_.begin(), exact_.end(), "lo") != exact_.end()) {
    // Replies to the node's own connections are handed to lo with a node address as source;
    // the kernel accepts that on lo only with accept_local (kube-proxy sets route_localnet
    // the same way).
    std::ofstream f("/proc/sys/net/ipv4/conf/lo/accept_local");
    f << "1";
    if (!f.flush()) throw std::runtime_error("--devices lo: setting net.ipv4.conf.lo.accept_local");
  }
  // A previous run's pod CIDRs: replaced (or removed) at the first sync.
  np_range_key k{}, next{};
  for (const np_range_key* prev = nullptr;
       bpf_map_get_next_key(progs_->srcRangesFd(), prev, &next) == 0; prev = &k) {
    k = next;
    if (k.ranges_id == NP_RANGES_LOCAL_PODS) localPods_.push_back(k);
  }
  writer_ = std::make_unique<NodePortWriter>(*progs_, addresses_, net.maglevTableSize,
                                             net.directServerReturn, net.masqueradeAll);
  // The previous run's entries keep serving until the first full sync has written this run's.
  if (!progs_->adoptedMaps().empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    writer_->adopt();
    spdlog::info(
        "ebpf: packet path: read what the previous run left in {:.1f} ms",
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  for (const std::string& dev : exact_) {
    const int ifindex = static_cast<int>(if_nametoindex(dev.c_str()));
    progs_->attach(ifindex);
    attached_[ifindex] = dev;
    // XDP in front of tc on the interfaces named exactly (lo has no driver to run it): where
    // the driver has native XDP, new and established flows with a resolved next hop are
    // forwarded before an skb exists; elsewhere, and for what XDP passes, tc does it all.
    // Not on PREFIX+ or the default `+` interfaces: a veth forwards XDP_TX / redirected frames
    // only when its peer runs XDP or GRO, which pods' interfaces do not promise.
    if (dev == "lo") continue;
    if (auto why = progs_->attachXdp(ifindex); why.empty()) {
      xdp_.push_back(dev);
      spdlog::info("ebpf: {}: NodePort load balancer at native XDP, tc behind it", dev);
    } else {
      spdlog::info("ebpf: {}: tc only ({})", dev, why);
    }
  }
  attachNew();
  // Interfaces a previous run attached to and this one does not (--devices changed).
  const int gone = progs_->detachOthers();
  std::vector<std::string> shown;
  for (const auto& a : addresses_) shown.push_back(a.str());
  spdlog::info(
      "ebpf: NodePort load balancer at {} ingress/egress of {}; node addresses {}{}",
      progs_->tcMode(), fmt::join(attached(), ","), fmt::join(shown, ","),
      net.bpfPinDir.empty()
          ? std::string()
          : fmt::format("; pinned under {} ({} maps adopted, {} links updated in place, {} "
                        "attachments of interfaces no longer in --devices removed)",
                        net.bpfPinDir, progs_->adoptedMaps().size(), progs_->updatedLinks(), gone));
}

void NodePortPath::attachNew() {
  if (prefixes_.empty()) return;
  struct if_nameindex* list = if_nameindex();
  if (!list) return;
  for (struct if_nameindex* i = list; i->if_index != 0; ++i) {
    const std::string name = i->if_name;
    const bool match = std::any_of(prefixes_.begin(), prefixes_.end(),
                                   [&](const std::string& p) { return name.rfind(p, 0) == 0; });
    const int ifindex = static_cast<int>(i->if_index);
    auto it = attached_.find(ifindex);
    if (!match || (it != attached_.end() && it->second == name)) continue;
    try {
      progs_->attach(ifindex);
      attached_[ifindex] = name;
      spdlog::debug("ebpf: NodePort programs attached to {}", name);
    } catch (const std::exception& e) {
      spdlog::warn("ebpf: {} ({}): {}", name, ifindex, e.what());  // gone meanwhile
    }
  }
  // Interfaces that went (pods deleted): their links detached with them, but the pins would
  // stay, two per pod, for as long as this process runs.
  std::map<int, std::string> present;
  for (struct if_nameindex* i = list; i->if_index != 0; ++i)
    present[static_cast<int>(i->if_index)] = i->if_name;
  if_freenameindex(list);
  for (auto it = attached_.begin(); it != attached_.end();) {
    auto p = present.find(it->first);
    if (p != present.end() && p->second == it->second) {
      ++it;
      continue;
    }
    try {
      progs_->detach(it->first);
    } catch (const std::exception& e) {
      spdlog::warn("ebpf: {} ({}) went: {}", it->second, it->first, e.what());
    }
    it = attached_.erase(it);
  }
}

std::vector<std::string> NodePortPath::attached() const {
  std::vector<std::string> out;
  for (const auto& [i, name] : attached_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

bool NodePortPath::followNode(const proxier::NodeContext* node) {
  if (!primaryOnly_) return false;
  std::vector<IpAddr> now = node ? node->primaryIps : std::vector<IpAddr>{};
  if (now == addresses_) return false;
  addresses_ = std::move(now);
  writer_->setNodeAddresses(addresses_);
  std::vector<std::string> shown;
  for (const auto& a : addresses_) shown.push_back(a.str());
  spdlog::info("ebpf: NodePorts answer on the node's primary IPs {}", fmt::join(shown, ","));
  return true;
}

void NodePortPath::followPodCidrs(const proxier::NodeContext* node) {
  std::vector<np_range_key> now;
  if (dsr_ && node && node->node) {
    for (const proxier::Cidr& c : node->node->podCIDRs) {
      now.push_back(rangeKey(NP_RANGES_LOCAL_PODS, c));
    }
  }
  for (const IpAddr& a : podAddresses_) {
    now.push_back(
        rangeKey(NP_RANGES_LOCAL_PODS, proxier::Cidr{a, a.isV4() ? uint8_t{32} : uint8_t{128}}));
  }
  auto same = [](const np_range_key& a, const np_range_key& b) {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
  };
  if (now.size() == localPods_.size() &&
      std::equal(now.begin(), now.end(), localPods_.begin(), same)) {
    return;
  }
  for (const np_range_key& k : now) progs_->addSourceRange(NP_RANGES_LOCAL_PODS, k);
  for (const np_range_key& k : localPods_) {
    if (std::none_of(now.begin(), now.end(), [&](const np_range_key& n) { return same(n, k); }))
      progs_->removeSourceRange(k);
  }
  localPods_ = std::move(now);
  if (dsr_) {
    spdlog::info(
        "ebpf: direct server return: {} pod CIDR(s) and addresses of this node stay SNATed",
        localPods_.size());
  }
}

std::string NodePortPath::syncAll() {
  for (const auto& [k, v] : ports_) {
    if (auto err = writer_->sync(*v); !err.empty()) return err;
  }
  return "";
}

std::string NodePortPath::apply(const proxier::Diff& diff) {
  writer_->begin();
  auto err = applyBatch(diff);
  auto committed = writer_->commit();
  return err.empty() ? committed : err;
}

std::string NodePortPath::applyBatch(const proxier::Diff& diff) {
  attachNew();
  for (const auto& d : diff.deletes) {
    if (auto err = writer_->remove(d.key); !err.empty()) return err;
    ports_.erase(d.key);
  }
  followPodCidrs(diff.node);
  const bool moved = followNode(diff.node);
  for (const auto& u : diff.upserts) {
    ports_[u.view->key()] = u.view;
    if (moved) continue;
    if (auto err = writer_->sync(*u.view, u); !err.empty()) return err;
  }
  return moved ? syncAll() : "";
}

std::string NodePortPath::fullSync(const proxier::State& state) {
  writer_->begin();
  auto err = fullSyncBatch(state);
  auto committed = writer_->commit();
  if (!err.empty()) return err;
  if (!committed.empty()) return committed;
  if (!writer_->adopting()) return "";
  const auto t0 = std::chrono::steady_clock::now();
  auto done = writer_->finishAdoption();
  spdlog::info(
      "ebpf: packet path: the previous run's leftovers removed in {:.1f} ms",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return done;
}

std::string NodePortPath::fullSyncBatch(const proxier::State& state) {
  attachNew();
  followPodCidrs(state.node);
  followNode(state.node);
  std::map<proxier::ServicePortKey, const proxier::ServicePortView*> want;
  for (const auto* v : state.ports) want[v->key()] = v;
  for (const auto& [k, v] : ports_) {
    if (want.count(k)) continue;
    if (auto err = writer_->remove(k); !err.empty()) return err;
  }
  ports_ = std::move(want);
  return syncAll();
}

}  // namespace sliceproxy::backends::ebpf
