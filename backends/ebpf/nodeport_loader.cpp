#include "backends/ebpf/nodeport_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <linux/if_link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "nodeport_lb.skel.h"

namespace sliceproxy::backends::ebpf {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(err < 0 ? -err : err)));
}

// Priority of our filters on the clsact hooks: fixed, so detach finds them again.
constexpr uint32_t kTcPriority = 0xc001;
constexpr uint32_t kTcHandle = 1;

}  // namespace

NodePortPrograms::NodePortPrograms(const NodePortOptions& opts) {
  skel_ = nodeport_lb::open();
  if (!skel_) fail("opening the nodeport_lb BPF object", errno);
  const std::pair<bpf_map*, uint32_t> sizes[] = {{skel_->maps.np_frontends, opts.frontendEntries},
                                                 {skel_->maps.np_maglev, opts.frontendEntries},
                                                 {skel_->maps.np_backends, opts.backendEntries},
                                                 {skel_->maps.np_ct, opts.flowEntries},
                                                 {skel_->maps.np_rnat, opts.flowEntries}};
  for (auto [map, n] : sizes) bpf_map__set_max_entries(map, n);
  if (int err = nodeport_lb::load(skel_); err) {
    nodeport_lb::destroy(skel_);
    skel_ = nullptr;
    fail("loading the nodeport_lb BPF programs (np_ingress, np_egress, np_xdp)", err);
  }
  ports_ = std::make_unique<FrontendPorts>(bpf_map__fd(skel_->maps.np_fe_ports));
}

NodePortPrograms::~NodePortPrograms() {
  std::set<int> all = attached_;
  all.insert(xdp_.begin(), xdp_.end());
  for (int ifindex : all) {
    try {
      detach(ifindex);
    } catch (const std::exception&) {
      // The interface is gone, and its filters with it.
    }
  }
  if (skel_) nodeport_lb::destroy(skel_);
}

int NodePortPrograms::ingressFd() const {
  return bpf_program__fd(skel_->progs.np_ingress);
}
int NodePortPrograms::egressFd() const {
  return bpf_program__fd(skel_->progs.np_egress);
}
int NodePortPrograms::xdpFd() const {
  return bpf_program__fd(skel_->progs.np_xdp);
}
int NodePortPrograms::frontendsFd() const {
  return bpf_map__fd(skel_->maps.np_frontends);
}
int NodePortPrograms::backendsFd() const {
  return bpf_map__fd(skel_->maps.np_backends);
}
int NodePortPrograms::maglevFd() const {
  return bpf_map__fd(skel_->maps.np_maglev);
}
int NodePortPrograms::ctFd() const {
  return bpf_map__fd(skel_->maps.np_ct);
}
int NodePortPrograms::rnatFd() const {
  return bpf_map__fd(skel_->maps.np_rnat);
}

int NodePortPrograms::frontendPortsFd() const {
  return bpf_map__fd(skel_->maps.np_fe_ports);
}

void NodePortPrograms::setFrontend(const np_fe_key& key, const np_frontend& value) {
  if (frontends_.insert(key).second) ports_->add(key.port);
  if (bpf_map_update_elem(frontendsFd(), &key, &value, BPF_ANY) != 0) {
    fail("np_frontends: writing a frontend", errno);
  }
}

void NodePortPrograms::removeFrontend(const np_fe_key& key) {
  if (bpf_map_delete_elem(frontendsFd(), &key) != 0 && errno != ENOENT) {
    fail("np_frontends: deleting a frontend", errno);
  }
  if (frontends_.erase(key)) ports_->remove(key.port);
}

void NodePortPrograms::setBackend(uint32_t id, const np_backend& backend) {
  if (bpf_map_update_elem(backendsFd(), &id, &backend, BPF_ANY) != 0) {
    fail(fmt::format("np_backends: writing backend {}", id), errno);
  }
}

void NodePortPrograms::removeBackend(uint32_t id) {
  if (bpf_map_delete_elem(backendsFd(), &id) != 0 && errno != ENOENT) {
    fail(fmt::format("np_backends: deleting backend {}", id), errno);
  }
}

MaglevTableMap::MaglevTableMap(uint32_t size) : size_(size) {
  LIBBPF_OPTS(bpf_map_create_opts, mopts, .map_flags = BPF_F_INNER_MAP | BPF_F_MMAPABLE);
  // Two entries per 8-byte element (np_maglev_pair): entry i at byte 4 * i of the mapping.
  const uint32_t elements = (size + 1) / 2;
  fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "np_maglev_tbl", sizeof(uint32_t),
                       sizeof(np_maglev_pair), elements, &mopts);
  if (fd_ < 0) fail(fmt::format("np_maglev: creating a table of {} entries", size), errno);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  mapped_ = (size_t{elements} * sizeof(np_maglev_pair) + page - 1) / page * page;
  void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(fd_);
    fail(fmt::format("np_maglev: mapping a table of {} entries", size), err);
  }
  data_ = static_cast<uint32_t*>(p);
}

MaglevTableMap::~MaglevTableMap() {
  if (data_) munmap(data_, mapped_);
  if (fd_ >= 0) close(fd_);
}

void NodePortPrograms::installMaglevTable(uint32_t tableId, const MaglevTableMap& table) {
  const int fd = table.fd();
  if (bpf_map_update_elem(maglevFd(), &tableId, &fd, BPF_ANY) != 0) {
    fail(fmt::format("np_maglev {}: installing the table", tableId), errno);
  }
}

void NodePortPrograms::installMaglevTables(const std::vector<std::pair<uint32_t, int>>& idAndFd) {
  if (idAndFd.empty()) return;
  std::vector<uint32_t> keys, fds;
  for (auto [id, fd] : idAndFd) {
    keys.push_back(id);
    fds.push_back(static_cast<uint32_t>(fd));
  }
  uint32_t count = static_cast<uint32_t>(keys.size());
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  if (bpf_map_update_batch(maglevFd(), keys.data(), fds.data(), &count, &opts) != 0) {
    fail(fmt::format("np_maglev: installing {} tables (installed {})", keys.size(), count), errno);
  }
}

void NodePortPrograms::setMaglevTable(uint32_t tableId, const std::vector<uint32_t>& backendIds) {
  if (backendIds.empty()) {
    removeMaglevTable(tableId);
    return;
  }
  MaglevTableMap t(static_cast<uint32_t>(backendIds.size()));
  for (uint32_t i = 0; i < t.size(); ++i) t.set(i, backendIds[i]);
  installMaglevTable(tableId, t);  // the outer map holds the table from here on
}

void NodePortPrograms::removeMaglevTable(uint32_t tableId) {
  if (bpf_map_delete_elem(maglevFd(), &tableId) != 0 && errno != ENOENT) {
    fail(fmt::format("np_maglev {}: deleting the table", tableId), errno);
  }
}

void NodePortPrograms::addSourceRange(uint32_t rangesId, const np_range_key& key) {
  const uint8_t one = 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_src_ranges), &key, &one, BPF_ANY) != 0) {
    fail(fmt::format("np_src_ranges: writing a source range of {}", rangesId), errno);
  }
}

void NodePortPrograms::removeSourceRange(const np_range_key& key) {
  if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.np_src_ranges), &key) != 0 && errno != ENOENT) {
    fail(fmt::format("np_src_ranges: deleting a source range of {}", key.ranges_id), errno);
  }
}

void NodePortPrograms::addLocalAddress(const np_local_key& key) {
  const uint8_t one = 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_local), &key, &one, BPF_ANY) != 0) {
    fail("np_local: writing a node address", errno);
  }
}

void NodePortPrograms::setSnat(uint8_t family, const np_snat& snat) {
  const uint32_t slot = family == NP_FAMILY_V4 ? 0 : 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_snat), &slot, &snat, BPF_ANY) != 0) {
    fail(fmt::format("np_snat[{}]: writing the SNAT address", slot), errno);
  }
}

void NodePortPrograms::attach(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  int rc = bpf_tc_hook_create(&hook);
  if (rc != 0 && rc != -EEXIST) fail(fmt::format("ifindex {}: creating clsact", ifindex), rc);
  for (auto [point, fd] : {std::pair{BPF_TC_INGRESS, ingressFd()}, {BPF_TC_EGRESS, egressFd()}}) {
    hook.attach_point = point;
    LIBBPF_OPTS(bpf_tc_opts, topts, .prog_fd = fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
                .priority = kTcPriority);
    if (int err = bpf_tc_attach(&hook, &topts); err) {
      fail(fmt::format("ifindex {}: attaching {}", ifindex,
                       point == BPF_TC_INGRESS ? "np_ingress" : "np_egress"),
           err);
    }
  }
  attached_.insert(ifindex);
}

std::string NodePortPrograms::attachXdp(int ifindex) {
  // Native only: generic (skb) XDP runs after the skb is built, where tc already is.
  if (int err = bpf_xdp_attach(ifindex, xdpFd(), XDP_FLAGS_DRV_MODE, nullptr); err) {
    return fmt::format("native XDP on ifindex {}: {}", ifindex, std::strerror(-err));
  }
  xdp_.insert(ifindex);
  const uint8_t one = 1;
  const uint32_t key = static_cast<uint32_t>(ifindex);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_xdp_out), &key, &one, BPF_ANY) != 0) {
    const int err = errno;
    bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr);
    xdp_.erase(ifindex);
    return fmt::format("np_xdp_out[{}]: {}", ifindex, std::strerror(err));
  }
  return "";
}

void NodePortPrograms::detach(int ifindex) {
  const bool tc = attached_.erase(ifindex) > 0;
  if (xdp_.erase(ifindex)) {
    const uint32_t key = static_cast<uint32_t>(ifindex);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.np_xdp_out), &key);
    if (int err = bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr); err && err != -ENODEV) {
      fail(fmt::format("ifindex {}: detaching np_xdp", ifindex), err);
    }
  }
  if (!tc) return;  // XDP only (an XDP output without the tc programs: tests, benches)
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, topts, .handle = kTcHandle, .priority = kTcPriority);
    if (int err = bpf_tc_detach(&hook, &topts); err && err != -ENOENT) {
      fail(fmt::format("ifindex {}: detaching from tc", ifindex), err);
    }
  }
}

}  // namespace sliceproxy::backends::ebpf
