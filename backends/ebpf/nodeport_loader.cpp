#include "backends/ebpf/nodeport_loader.h"

#include "backends/ebpf/maglev.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "backends/ebpf/bpf_error.h"
#include "nodeport_lb.skel.h"

namespace sliceproxy::backends::ebpf {

namespace fs = std::filesystem;

namespace {

// Priority of our filters on the clsact hooks (kernels without tcx, and earlier versions of
// sliceproxy): fixed, so detach and a new run find them again.
constexpr uint32_t kTcPriority = 0xc001;
constexpr uint32_t kTcHandle = 1;

// tcx (Linux 6.6) is newer than this system's libbpf and UAPI headers: the kernel ABI values.
constexpr int kAttachTcxIngress = 46, kAttachTcxEgress = 47;
constexpr uint32_t kLinkTypeTcx = 11;

// The pin names of an interface's links, by the program's name.
const char* const kLinkNames[] = {"np_ingress", "np_egress", "np_xdp"};

bool onBpfFs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

// The interface a link is attached to, 0 when it is detached (its interface went); the
// link's attach type in *attachType (tcx) when wanted. -1 when fd is not a link of type.
int linkIfindex(int fd, uint32_t type, uint32_t* attachType = nullptr) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.type != type) return -1;
  // xdp {ifindex} and tcx {ifindex, attach_type} both start the union.
  uint32_t words[2];
  std::memcpy(words, &info.xdp, sizeof(words));
  if (attachType) *attachType = words[1];
  return static_cast<int>(words[0]);
}

// Looking for filters on an interface without a clsact qdisc is no error here, but libbpf
// prints the kernel's complaint: silenced while we look.
class QuietLibbpf {
 public:
  QuietLibbpf() : old_(libbpf_set_print(nullptr)) {}
  ~QuietLibbpf() { libbpf_set_print(old_); }
  QuietLibbpf(const QuietLibbpf&) = delete;
  QuietLibbpf& operator=(const QuietLibbpf&) = delete;

 private:
  libbpf_print_fn_t old_;
};

// The name of the program with this id ("" when it is gone).
std::string progName(uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  const bool ok = bpf_obj_get_info_by_fd(fd, &info, &len) == 0;
  close(fd);
  return ok ? info.name : "";
}

// "np_ingress_12" -> 12; -1 for a name that is not one of ours.
int pinnedIfindex(const std::string& name) {
  for (const char* n : kLinkNames) {
    const std::string prefix = std::string(n) + "_";
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    if (rest.empty() || rest.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoi(rest);
  }
  return -1;
}

// Detaches what these programs left on interfaces not in keep: pinned links under linkDir
// (none when empty), then netlink tc filters and XDP programs named like ours. Returns how
// many went; xdpGone gets the ifindexes that lost np_xdp.
int detachAllBut(const std::string& linkDir, const std::set<int>& keepTc,
                 const std::set<int>& keepXdp, std::vector<int>* xdpGone = nullptr) {
  int n = 0;
  std::error_code ec;
  if (!linkDir.empty() && fs::exists(linkDir, ec)) {
    for (const auto& entry : fs::directory_iterator(linkDir, ec)) {
      const std::string name = entry.path().filename().string();
      const int ifindex = pinnedIfindex(name);
      const bool xdp = name.rfind("np_xdp_", 0) == 0;
      if (ifindex < 0 || (xdp ? keepXdp : keepTc).contains(ifindex)) continue;
      const int fd = bpf_obj_get(entry.path().c_str());
      if (fd >= 0) {
        // Detach now: dropping the last reference frees a link from a workqueue, later.
        const int err = bpf_link_detach(fd);
        close(fd);
        if (err && err != -EINVAL && err != -ENOLINK)
          throwBpfError("detaching " + entry.path().string(), err);
      }
      if (unlink(entry.path().c_str()) != 0)
        throwBpfError("unpinning " + entry.path().string(), errno);
      if (xdpGone && xdp) xdpGone->push_back(ifindex);
      ++n;
    }
  }
  struct if_nameindex* list = if_nameindex();
  if (!list) return n;
  QuietLibbpf quiet;
  for (struct if_nameindex* i = list; i->if_index != 0; ++i) {
    const int ifindex = static_cast<int>(i->if_index);
    for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
      if (keepTc.contains(ifindex)) break;
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
      LIBBPF_OPTS(bpf_tc_opts, topts, .handle = kTcHandle, .priority = kTcPriority);
      if (bpf_tc_query(&hook, &topts) != 0) continue;
      if (progName(topts.prog_id).rfind("np_", 0) != 0) continue;  // another program's
      LIBBPF_OPTS(bpf_tc_opts, dopts, .handle = kTcHandle, .priority = kTcPriority);
      if (bpf_tc_detach(&hook, &dopts) == 0) ++n;
    }
    uint32_t id = 0;
    if (!keepXdp.contains(ifindex) && bpf_xdp_query_id(ifindex, XDP_FLAGS_DRV_MODE, &id) == 0 &&
        id != 0 && progName(id) == "np_xdp" &&
        bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr) == 0) {
      ++n;
      if (xdpGone) xdpGone->push_back(ifindex);
    }
  }
  if_freenameindex(list);
  return n;
}

}  // namespace

NodePortPrograms::NodePortPrograms(const NodePortOptions& opts)
    : pinDir_(opts.pinDir), tcMode_(opts.tcx ? TcMode::Unknown : TcMode::Netlink) {
  skel_ = nodeport_lb::open();
  if (!skel_) throwBpfError("opening the nodeport_lb BPF object", errno);
  const std::pair<bpf_map*, uint32_t> sizes[] = {{skel_->maps.np_frontends, opts.frontendEntries},
                                                 {skel_->maps.np_maglev, opts.frontendEntries},
                                                 {skel_->maps.np_backends, opts.backendEntries},
                                                 {skel_->maps.np_ct, opts.flowEntries},
                                                 {skel_->maps.np_rnat, opts.flowEntries}};
  for (auto [map, n] : sizes) bpf_map__set_max_entries(map, n);
  if (!pinDir_.empty()) {
    const fs::path pin(pinDir_);
    if (!onBpfFs(pin.parent_path()) && !onBpfFs(pinDir_)) {
      nodeport_lb::destroy(skel_);
      throw std::runtime_error(
          fmt::format("--bpf-pin-dir {}: not on a bpf filesystem (mount -t bpf bpf {})", pinDir_,
                      pin.parent_path().string()));
    }
    std::error_code ec;
    fs::create_directories(pin / "maps", ec);
    if (!ec) fs::create_directories(pin / "links", ec);
    if (ec) {
      nodeport_lb::destroy(skel_);
      throw std::runtime_error(fmt::format("--bpf-pin-dir {}: {}", pinDir_, ec.message()));
    }
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, skel_->obj) {
      if (bpf_map__is_internal(map)) continue;  // .rodata, .bss: this run's alone
      const std::string path = (pin / "maps" / bpf_map__name(map)).string();
      if (const int fd = bpf_obj_get(path.c_str()); fd >= 0) {
        bpf_map_info info{};
        uint32_t len = sizeof(info);
        const bool read = bpf_obj_get_info_by_fd(fd, &info, &len) == 0;
        close(fd);
        const bool same = read && info.type == static_cast<uint32_t>(bpf_map__type(map)) &&
                          info.key_size == bpf_map__key_size(map) &&
                          info.value_size == bpf_map__value_size(map) &&
                          info.max_entries == bpf_map__max_entries(map) &&
                          info.map_flags == bpf_map__map_flags(map);
        if (same) {
          adopted_.push_back(bpf_map__name(map));
        } else {
          // Unpinned only: the old programs keep the old map until their links run the new
          // programs, which use the new one.
          recreated_.push_back(fmt::format(
              "{} (type {} key {} value {} entries {} flags {:#x}; now type {} key {} value {} "
              "entries {} flags {:#x})",
              bpf_map__name(map), info.type, info.key_size, info.value_size, info.max_entries,
              info.map_flags, static_cast<uint32_t>(bpf_map__type(map)), bpf_map__key_size(map),
              bpf_map__value_size(map), bpf_map__max_entries(map), bpf_map__map_flags(map)));
          if (unlink(path.c_str()) != 0) {
            const int err = errno;
            nodeport_lb::destroy(skel_);
            throwBpfError("unpinning " + path + " (its layout changed)", err);
          }
        }
      }
      if (int err = bpf_map__set_pin_path(map, path.c_str()); err) {
        nodeport_lb::destroy(skel_);
        throwBpfError("pin path " + path, err);
      }
    }
  }
  if (int err = nodeport_lb::load(skel_); err) {
    nodeport_lb::destroy(skel_);
    skel_ = nullptr;
    throwBpfError(pinDir_.empty()
                      ? std::string("loading the nodeport_lb BPF programs (np_ingress, "
                                    "np_egress, np_xdp)")
                      : fmt::format("loading the nodeport_lb BPF programs (maps pinned under "
                                    "{}/maps)",
                                    pinDir_),
                  err);
  }
  ports_ = std::make_unique<FrontendPorts>(bpf_map__fd(skel_->maps.np_fe_ports));
  void* live = mmap(nullptr, NP_LIVE_SLOTS * sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_SHARED,
                    bpf_map__fd(skel_->maps.np_live), 0);
  if (live == MAP_FAILED) {
    const int err = errno;
    nodeport_lb::destroy(skel_);
    skel_ = nullptr;
    throwBpfError("mapping np_live", err);
  }
  live_ = static_cast<uint32_t*>(live);
  seedPrefilters();
}

// The programs' prefilters (np_fe_ports, np_rnat_sources) are new next to an adopted previous
// run that had none (an upgrade): filled from the adopted frontends and reverse entries before
// any link runs the new programs, or they would pass the frontends and the replies by until the
// first full sync (and the replies of flows made before it for good).
void NodePortPrograms::seedPrefilters() {
  auto adopted = [this](const char* name) {
    return std::find(adopted_.begin(), adopted_.end(), name) != adopted_.end();
  };
  if (adopted("np_frontends") && !adopted("np_fe_ports")) {
    np_fe_key k{}, next{};
    const void* at = nullptr;
    while (bpf_map_get_next_key(frontendsFd(), at, &next) == 0) {
      ports_->keep(next.port);
      k = next;
      at = &k;
    }
  }
  if (adopted("np_backends") && !adopted("np_live")) {
    uint32_t k = 0, next = 0;
    const void* at = nullptr;
    while (bpf_map_get_next_key(backendsFd(), at, &next) == 0) {
      live_[next & (NP_LIVE_SLOTS - 1)] = next;
      k = next;
      at = &k;
    }
  }
  if (adopted("np_rnat") && !adopted("np_rnat_sources")) {
    np_rnat_key k{}, next{};
    const void* at = nullptr;
    const uint8_t one = 1;
    while (bpf_map_get_next_key(rnatFd(), at, &next) == 0) {
      // Every backend with a reverse entry, SNATed or not: one too many costs a lookup.
      const uint32_t src = rnatSourceKey(next.backend, next.family);
      bpf_map_update_elem(rnatSourcesFd(), &src, &one, BPF_ANY);
      k = next;
      at = &k;
    }
  }
}

NodePortPrograms::~NodePortPrograms() {
  if (pinDir_.empty()) {
    std::set<int> all = attached_;
    all.insert(xdp_.begin(), xdp_.end());
    for (int ifindex : all) {
      try {
        detach(ifindex);
      } catch (const std::exception&) {
        // The interface is gone, and its programs with it.
      }
    }
  }
  // Pinned links stay attached: closing this process's reference detaches nothing.
  for (auto& [name, fd] : links_) close(fd);
  if (live_) munmap(live_, NP_LIVE_SLOTS * sizeof(uint32_t));
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
int NodePortPrograms::srcRangesFd() const {
  return bpf_map__fd(skel_->maps.np_src_ranges);
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

uint32_t NodePortPrograms::rnatSourceKey(const uint8_t* addr, uint8_t family) {
  uint32_t w[4];
  std::memcpy(w, addr, sizeof(w));
  return w[0] ^ w[1] ^ w[2] ^ w[3] ^ (uint32_t{family} << 24);
}

int NodePortPrograms::rnatSourcesFd() const {
  return bpf_map__fd(skel_->maps.np_rnat_sources);
}

void NodePortPrograms::setFrontend(const np_fe_key& key, const np_frontend& value) {
  if (frontends_.insert(key).second) ports_->add(key.port);
  if (bpf_map_update_elem(frontendsFd(), &key, &value, BPF_ANY) != 0) {
    throwBpfError("np_frontends: writing a frontend", errno);
  }
}

void NodePortPrograms::removeFrontend(const np_fe_key& key) {
  if (bpf_map_delete_elem(frontendsFd(), &key) != 0 && errno != ENOENT) {
    throwBpfError("np_frontends: deleting a frontend", errno);
  }
  if (frontends_.erase(key)) ports_->remove(key.port);
}

void NodePortPrograms::setBackend(uint32_t id, const np_backend& backend) {
  if (bpf_map_update_elem(backendsFd(), &id, &backend, BPF_ANY) != 0) {
    throwBpfError(fmt::format("np_backends: writing backend {}", id), errno);
  }
  __atomic_store_n(&live_[id & (NP_LIVE_SLOTS - 1)], id, __ATOMIC_RELEASE);
}

void NodePortPrograms::removeBackend(uint32_t id) {
  // Dead first: a UDP flow on it moves before its entry goes.
  uint32_t* slot = &live_[id & (NP_LIVE_SLOTS - 1)];
  if (__atomic_load_n(slot, __ATOMIC_RELAXED) == id) __atomic_store_n(slot, 0, __ATOMIC_RELEASE);
  if (bpf_map_delete_elem(backendsFd(), &id) != 0 && errno != ENOENT) {
    throwBpfError(fmt::format("np_backends: deleting backend {}", id), errno);
  }
}

uint32_t NodePortPrograms::freeBackendId(uint32_t from) const {
  // Bounded: with every slot live (a million backends) the id collides, and the older id's
  // UDP flows are balanced again.
  for (uint32_t i = 0; i < NP_LIVE_SLOTS; ++i, ++from) {
    if (from == 0) continue;
    if (__atomic_load_n(&live_[from & (NP_LIVE_SLOTS - 1)], __ATOMIC_RELAXED) == 0) return from;
  }
  return from;
}

MaglevTableMap::MaglevTableMap(uint32_t size) : size_(size) {
  LIBBPF_OPTS(bpf_map_create_opts, mopts, .map_flags = BPF_F_INNER_MAP | BPF_F_MMAPABLE);
  // Two entries per 8-byte element (np_maglev_pair): entry i at byte 4 * i of the mapping.
  const uint32_t elements = (size + 1) / 2;
  fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "np_maglev_tbl", sizeof(uint32_t),
                       sizeof(np_maglev_pair), elements, &mopts);
  if (fd_ < 0) throwBpfError(fmt::format("np_maglev: creating a table of {} entries", size), errno);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd_, &info, &len) != 0) {
    const int err = errno;
    close(fd_);
    throwBpfError(fmt::format("np_maglev: reading the id of a table of {} entries", size), err);
  }
  id_ = info.id;
  map();
}

void MaglevTableMap::map() {
  const uint32_t elements = (size_ + 1) / 2;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  mapped_ = (size_t{elements} * sizeof(np_maglev_pair) + page - 1) / page * page;
  void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(fd_);
    fd_ = -1;
    throwBpfError(fmt::format("np_maglev: mapping the table of {} entries (map id {})", size_, id_),
                  err);
  }
  data_ = static_cast<uint32_t*>(p);
}

void MaglevTableMap::park() {
  if (size_ < kMaglevIncrementalMinSize) release();
}

void MaglevTableMap::release() {
  if (data_) munmap(data_, mapped_);
  data_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void MaglevTableMap::open() {
  if (fd_ >= 0) return;
  fd_ = bpf_map_get_fd_by_id(id_);
  if (fd_ < 0)
    throwBpfError(fmt::format("np_maglev: reopening the table of map id {}", id_), errno);
  map();
}

MaglevTableMap::~MaglevTableMap() {
  release();
}

void NodePortPrograms::installMaglevTable(uint32_t tableId, const MaglevTableMap& table) {
  const int fd = table.fd();
  if (bpf_map_update_elem(maglevFd(), &tableId, &fd, BPF_ANY) != 0) {
    throwBpfError(fmt::format("np_maglev {}: installing the table", tableId), errno);
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
    throwBpfError(fmt::format("np_maglev: installing {} tables (installed {})", keys.size(), count),
                  errno);
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
    throwBpfError(fmt::format("np_maglev {}: deleting the table", tableId), errno);
  }
}

void NodePortPrograms::removeMaglevTables(const std::vector<uint32_t>& tableIds) {
  size_t done = 0;
  while (done < tableIds.size()) {
    uint32_t count = static_cast<uint32_t>(tableIds.size() - done);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    if (bpf_map_delete_batch(maglevFd(), tableIds.data() + done, &count, &opts) == 0) return;
    if (errno != ENOENT) {
      throwBpfError(
          fmt::format("np_maglev: deleting {} tables (deleted {})", tableIds.size() - done, count),
          errno);
    }
    done += count + 1;  // that one was gone already
  }
}

void NodePortPrograms::addSourceRange(uint32_t rangesId, const np_range_key& key) {
  const uint8_t one = 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_src_ranges), &key, &one, BPF_ANY) != 0) {
    throwBpfError(fmt::format("np_src_ranges: writing a source range of {}", rangesId), errno);
  }
}

void NodePortPrograms::removeSourceRange(const np_range_key& key) {
  if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.np_src_ranges), &key) != 0 && errno != ENOENT) {
    throwBpfError(fmt::format("np_src_ranges: deleting a source range of {}", key.ranges_id),
                  errno);
  }
}

void NodePortPrograms::addLocalAddress(const np_local_key& key) {
  const uint8_t one = 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_local), &key, &one, BPF_ANY) != 0) {
    throwBpfError("np_local: writing a node address", errno);
  }
}

void NodePortPrograms::setSnat(uint8_t family, const np_snat& snat) {
  const uint32_t slot = family == NP_FAMILY_V4 ? 0 : 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_snat), &slot, &snat, BPF_ANY) != 0) {
    throwBpfError(fmt::format("np_snat[{}]: writing the SNAT address", slot), errno);
  }
}

void NodePortPrograms::setLocalAddresses(const std::vector<np_local_key>& keys) {
  const int fd = bpf_map__fd(skel_->maps.np_local);
  std::vector<np_local_key> stale;
  np_local_key k{}, next{};
  for (const np_local_key* prev = nullptr; bpf_map_get_next_key(fd, prev, &next) == 0; prev = &k) {
    k = next;
    const bool wanted = std::any_of(keys.begin(), keys.end(), [&](const np_local_key& w) {
      return std::memcmp(&w, &k, sizeof(k)) == 0;
    });
    if (!wanted) stale.push_back(k);
  }
  for (const auto& key : keys) addLocalAddress(key);
  for (const auto& key : stale) {
    if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) {
      throwBpfError("np_local: deleting a former node address", errno);
    }
  }
}

std::vector<uint32_t> NodePortPrograms::readMaglevTable(uint32_t tableId) const {
  uint32_t innerId = 0;
  if (bpf_map_lookup_elem(maglevFd(), &tableId, &innerId) != 0) return {};
  const int fd = bpf_map_get_fd_by_id(innerId);
  if (fd < 0) throwBpfError(fmt::format("np_maglev {}: opening the table", tableId), errno);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    const int err = errno;
    close(fd);
    throwBpfError(fmt::format("np_maglev {}: reading the table", tableId), err);
  }
  // Read through a mapping (elements 8 bytes apart, as written): one syscall for the table.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mapped = (size_t{info.max_entries} * 8 + page - 1) / page * page;
  void* p = mmap(nullptr, mapped, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED)
    throwBpfError(fmt::format("np_maglev {}: mapping the table", tableId), errno);
  const auto* data = static_cast<const uint32_t*>(p);
  std::vector<uint32_t> ids(info.max_entries);
  for (uint32_t i = 0; i < info.max_entries; ++i) ids[i] = data[size_t{i} * 2];
  munmap(p, mapped);
  return ids;
}

int NodePortPrograms::link(const char* name, int ifindex, int attachType, int progFd,
                           uint32_t flags) {
  const std::string pinName = fmt::format("{}_{}", name, ifindex);
  const bool xdp = attachType == BPF_XDP;
  const std::string path = pinDir_.empty() ? "" : pinDir_ + "/links/" + pinName;
  if (auto it = links_.find(pinName); it != links_.end()) {
    close(it->second);  // this object's own, attached earlier: a new one replaces it
    links_.erase(it);
  }
  if (!path.empty()) {
    if (const int old = bpf_obj_get(path.c_str()); old >= 0) {
      uint32_t type = 0;
      const int on = linkIfindex(old, xdp ? uint32_t{BPF_LINK_TYPE_XDP} : kLinkTypeTcx, &type);
      if (on == ifindex && (xdp || type == static_cast<uint32_t>(attachType))) {
        // Atomic: the hook runs the old program until this returns, the new one after.
        if (int err = bpf_link_update(old, progFd, nullptr); err) {
          close(old);
          throwBpfError("updating the pinned link " + path, err);
        }
        links_[pinName] = old;
        ++updatedLinks_;
        return 0;
      }
      // Its interface went (the link is detached; the ifindex may be another's by now).
      close(old);
      if (unlink(path.c_str()) != 0) throwBpfError("unpinning the stale link " + path, errno);
    }
  }
  LIBBPF_OPTS(bpf_link_create_opts, lopts, .flags = flags);
  const int fd = bpf_link_create(progFd, ifindex, static_cast<bpf_attach_type>(attachType), &lopts);
  if (fd < 0) return -errno;
  if (!path.empty() && bpf_obj_pin(fd, path.c_str()) != 0) {
    const int err = errno;
    close(fd);
    throwBpfError("pinning link " + path, err);
  }
  links_[pinName] = fd;
  return 0;
}

void NodePortPrograms::attach(int ifindex) {
  if (tcMode_ != TcMode::Netlink) {
    const int in = link("np_ingress", ifindex, kAttachTcxIngress, ingressFd(), 0);
    if (in == -EINVAL && tcMode_ == TcMode::Unknown) {
      tcMode_ = TcMode::Netlink;  // no tcx before Linux 6.6
    } else {
      if (in != 0)
        throwBpfError(fmt::format("ifindex {}: attaching np_ingress (tcx)", ifindex), in);
      if (int eg = link("np_egress", ifindex, kAttachTcxEgress, egressFd(), 0); eg != 0) {
        throwBpfError(fmt::format("ifindex {}: attaching np_egress (tcx)", ifindex), eg);
      }
      tcMode_ = TcMode::Tcx;
      // A filter an earlier version attached (and a kill -9 left) would run the programs a
      // second time, behind tcx: gone now that the links are in place.
      QuietLibbpf quiet;
      for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
        LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
        LIBBPF_OPTS(bpf_tc_opts, topts, .handle = kTcHandle, .priority = kTcPriority);
        if (bpf_tc_query(&hook, &topts) != 0 || progName(topts.prog_id).rfind("np_", 0) != 0)
          continue;
        LIBBPF_OPTS(bpf_tc_opts, dopts, .handle = kTcHandle, .priority = kTcPriority);
        bpf_tc_detach(&hook, &dopts);
      }
      attached_.insert(ifindex);
      return;
    }
  }
  attachNetlink(ifindex);
}

void NodePortPrograms::attachNetlink(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  int rc = bpf_tc_hook_create(&hook);
  if (rc != 0 && rc != -EEXIST)
    throwBpfError(fmt::format("ifindex {}: creating clsact", ifindex), rc);
  for (auto [point, fd] : {std::pair{BPF_TC_INGRESS, ingressFd()}, {BPF_TC_EGRESS, egressFd()}}) {
    hook.attach_point = point;
    // A filter a previous run left is replaced in place: the hook always has one.
    LIBBPF_OPTS(bpf_tc_opts, topts, .prog_fd = fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
                .priority = kTcPriority);
    if (int err = bpf_tc_attach(&hook, &topts); err) {
      throwBpfError(fmt::format("ifindex {}: attaching {}", ifindex,
                                point == BPF_TC_INGRESS ? "np_ingress" : "np_egress"),
                    err);
    }
  }
  attached_.insert(ifindex);
}

std::string NodePortPrograms::attachXdp(int ifindex) {
  // Native only: generic (skb) XDP runs after the skb is built, where tc already is.
  int err = link("np_xdp", ifindex, BPF_XDP, xdpFd(), XDP_FLAGS_DRV_MODE);
  if (err == -EBUSY) {
    // A program attached without a link (an earlier version, killed): replaced by the link.
    uint32_t id = 0;
    if (bpf_xdp_query_id(ifindex, XDP_FLAGS_DRV_MODE, &id) == 0 && progName(id) == "np_xdp" &&
        bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr) == 0) {
      err = link("np_xdp", ifindex, BPF_XDP, xdpFd(), XDP_FLAGS_DRV_MODE);
    }
  }
  if (err) return fmt::format("native XDP on ifindex {}: {}", ifindex, std::strerror(-err));
  xdp_.insert(ifindex);
  const uint8_t one = 1;
  const uint32_t key = static_cast<uint32_t>(ifindex);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.np_xdp_out), &key, &one, BPF_ANY) != 0) {
    const int werr = errno;
    detach(ifindex);
    return fmt::format("np_xdp_out[{}]: {}", ifindex, std::strerror(werr));
  }
  return "";
}

void NodePortPrograms::detach(int ifindex) {
  const bool tc = attached_.erase(ifindex) > 0;
  const bool xdp = xdp_.erase(ifindex) > 0;
  if (xdp) {
    const uint32_t key = static_cast<uint32_t>(ifindex);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.np_xdp_out), &key);
  }
  for (const char* name : kLinkNames) {
    const std::string pinName = fmt::format("{}_{}", name, ifindex);
    auto it = links_.find(pinName);
    if (it == links_.end()) continue;
    // Detached now, whoever else holds the link (its pin): an interface that is gone has
    // nothing left to detach.
    const int err = bpf_link_detach(it->second);
    close(it->second);
    links_.erase(it);
    if (!pinDir_.empty()) unlink((pinDir_ + "/links/" + pinName).c_str());
    if (err && err != -EINVAL && err != -ENOLINK && err != -ENODEV) {
      throwBpfError(fmt::format("ifindex {}: detaching {}", ifindex, name), err);
    }
  }
  if (!tc || tcMode_ != TcMode::Netlink) return;
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, topts, .handle = kTcHandle, .priority = kTcPriority);
    // ENODEV, EINVAL: the interface went, its filters with it.
    if (int err = bpf_tc_detach(&hook, &topts);
        err && err != -ENOENT && err != -ENODEV && err != -EINVAL) {
      throwBpfError(fmt::format("ifindex {}: detaching from tc", ifindex), err);
    }
  }
}

void NodePortPrograms::detachTcIngress(int ifindex) {
  const std::string pinName = fmt::format("np_ingress_{}", ifindex);
  if (auto it = links_.find(pinName); it != links_.end()) {
    if (int err = bpf_link_detach(it->second); err) throwBpfError("detaching " + pinName, err);
    close(it->second);
    links_.erase(it);
    if (!pinDir_.empty()) unlink((pinDir_ + "/links/" + pinName).c_str());
    return;
  }
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  LIBBPF_OPTS(bpf_tc_opts, topts, .handle = kTcHandle, .priority = kTcPriority);
  if (int err = bpf_tc_detach(&hook, &topts); err)
    throwBpfError("detaching np_ingress from tc", err);
}

int NodePortPrograms::detachOthers() {
  std::vector<int> xdpGone;
  const int n = detachAllBut(pinDir_.empty() ? "" : pinDir_ + "/links", attached_, xdp_, &xdpGone);
  for (int ifindex : xdpGone) {
    const uint32_t key = static_cast<uint32_t>(ifindex);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.np_xdp_out), &key);
  }
  return n;
}

uint64_t NodePortPrograms::removePinned(const std::string& pinDir) {
  // Links first: the programs leave the interfaces before the maps they read go away.
  uint64_t removed = static_cast<uint64_t>(detachAllBut(pinDir + "/links", {}, {}));
  const fs::path maps = fs::path(pinDir) / "maps";
  std::error_code ec;
  if (!fs::exists(maps, ec)) return removed;
  for (const auto& entry : fs::directory_iterator(maps, ec)) {
    if (entry.path().filename().string().rfind("np_", 0) != 0) continue;
    if (unlink(entry.path().c_str()) != 0)
      throwBpfError("unpinning " + entry.path().string(), errno);
    ++removed;
  }
  return removed;
}

}  // namespace sliceproxy::backends::ebpf
