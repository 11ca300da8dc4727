#include "backends/ebpf/sock_lb_loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "backends/ebpf/bpf_error.h"
#include "sock_lb.skel.h"
#include "stale_sockets.skel.h"

namespace sliceproxy::backends::ebpf {

namespace fs = std::filesystem;

namespace {

bool onBpfFs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

// The programs; each is pinned (as its cgroup link) under its name without the sp_ prefix.
const char* const kPrograms[] = {"sp_connect4",     "sp_connect6",    "sp_sendmsg4",
                                 "sp_sendmsg6",     "sp_recvmsg4",    "sp_recvmsg6",
                                 "sp_getpeername4", "sp_getpeername6"};

}  // namespace

std::string defaultCgroupRoot() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, dev, root, mountPoint;
    head >> id >> parent >> dev >> root >> mountPoint;
    return mountPoint;
  }
  return "";
}

SockLbPrograms::SockLbPrograms(const LoaderOptions& opts) {
  cgroupRoot_ = opts.cgroupRoot.empty() ? defaultCgroupRoot() : opts.cgroupRoot;
  if (cgroupRoot_.empty()) {
    throw std::runtime_error(
        "--cgroup-root: no cgroup2 mount on this host; mount one (mount -t cgroup2 none "
        "/run/sliceproxy/cgroupv2) and pass it");
  }
  struct statfs cst {};
  if (statfs(cgroupRoot_.c_str(), &cst) != 0) throwBpfError("--cgroup-root " + cgroupRoot_, errno);
  if (cst.f_type != CGROUP2_SUPER_MAGIC) {
    throw std::runtime_error("--cgroup-root " + cgroupRoot_ + ": not a cgroup v2 directory");
  }
  const fs::path pin(opts.pinDir);
  if (!onBpfFs(pin.parent_path()) && !onBpfFs(opts.pinDir)) {
    throw std::runtime_error(
        fmt::format("--bpf-pin-dir {}: not on a bpf filesystem (mount -t bpf bpf {})", opts.pinDir,
                    pin.parent_path().string()));
  }
  std::error_code ec;
  fs::create_directories(pin / "maps", ec);
  if (!ec) fs::create_directories(pin / "links", ec);
  if (ec) throw std::runtime_error(fmt::format("--bpf-pin-dir {}: {}", opts.pinDir, ec.message()));

  // Where earlier versions kept reverse translations (an LRU map of 30 MB, then an array
  // indexed by a hash): sp_rev_buckets replaced them and no program of this version reads them.
  for (const char* old : {"sp_reverse", "sp_rev_slots"}) unlink((pin / "maps" / old).c_str());

  skel_ = sock_lb::open();
  if (!skel_) throwBpfError("opening the sock_lb BPF object", errno);
  const std::pair<bpf_map*, uint32_t> sizes[] = {{skel_->maps.sp_services, opts.serviceEntries},
                                                 {skel_->maps.sp_slots, opts.slotEntries},
                                                 {skel_->maps.sp_members, opts.slotEntries}};
  for (auto [map, n] : sizes) bpf_map__set_max_entries(map, n);
  bool allPinned = true;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel_->obj) {
    // Internal maps (.rodata, .bss) belong to this run alone; bpffs refuses their names.
    if (bpf_map__is_internal(map)) continue;
    const std::string path = (pin / "maps" / bpf_map__name(map)).string();
    allPinned = allPinned && fs::exists(path);
    if (int err = bpf_map__set_pin_path(map, path.c_str()); err)
      throwBpfError("pin path " + path, err);
  }
  adoptedMaps_ = allPinned;
  // libbpf reuses a pinned map whose type, key, value, size and flags match, and pins a new
  // one otherwise; a mismatch (a changed map definition) fails here, naming the map.
  if (int err = sock_lb::load(skel_); err) {
    sock_lb::destroy(skel_);
    skel_ = nullptr;
    throwBpfError(fmt::format("loading the sock_lb programs (maps pinned under {})", opts.pinDir),
                  err);
  }
  try {
    attach((pin / "links").string());
  } catch (...) {
    sock_lb::destroy(skel_);
    skel_ = nullptr;
    throw;
  }
}

void SockLbPrograms::attach(const std::string& linkDir) {
  const int cg = open(cgroupRoot_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) throwBpfError("--cgroup-root " + cgroupRoot_, errno);
  struct stat cst {};
  fstat(cg, &cst);
  const uint64_t cgroupId = cst.st_ino;  // a cgroup v2 directory's inode is its cgroup id
  linkDir_ = linkDir;
  cgroupId_ = cgroupId;
  try {
    for (const char* name : kPrograms) {
      bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, name);
      if (!prog) throw std::runtime_error(fmt::format("BPF program {} missing", name));
      const std::string path = linkDir + "/" + (name + 3);
      const int old = bpf_obj_get(path.c_str());
      if (old >= 0) {
        bpf_link_info info{};
        uint32_t len = sizeof(info);
        const bool same = bpf_obj_get_info_by_fd(old, &info, &len) == 0 &&
                          info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cgroupId &&
                          info.cgroup.attach_type == bpf_program__expected_attach_type(prog);
        if (same) {
          // Atomic: the hook runs the old program until this returns, the new one after.
          const int err = bpf_link_update(old, bpf_program__fd(prog), nullptr);
          close(old);
          if (err) throwBpfError("updating the pinned link " + path, err);
          ++updatedLinks_;
          continue;
        }
        close(old);
      }
      bpf_link* link = bpf_program__attach_cgroup(prog, cg);
      if (!link) throwBpfError(fmt::format("attaching {} to cgroup {}", name, cgroupRoot_), errno);
      links_.push_back(link);
      // Pin beside the old link and rename over it: the old one (another cgroup, or none)
      // detaches only once the new one is in place.
      // (bpffs refuses dots in names.)
      const std::string tmp = path + "_new";
      unlink(tmp.c_str());
      if (int err = bpf_link__pin(link, tmp.c_str()); err)
        throwBpfError("pinning link " + tmp, err);
      if (rename(tmp.c_str(), path.c_str()) != 0) throwBpfError("pinning link " + path, errno);
    }
  } catch (...) {
    close(cg);
    throw;
  }
  close(cg);
}

std::string SockLbPrograms::detached() const {
  std::string out;
  for (const char* name : kPrograms) {
    const std::string path = linkDir_ + "/" + (name + 3);
    const int fd = bpf_obj_get(path.c_str());
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    // A detached cgroup link keeps its pin but no longer names the cgroup.
    const bool attached = fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
                          info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cgroupId_;
    if (fd >= 0) close(fd);
    if (attached) continue;
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", name,
                       fd < 0 ? "unpinned (" + path + ")" : "detached from " + cgroupRoot_);
  }
  return out;
}

void SockLbPrograms::reattach() {
  // This process's references keep an unpinned link attached: dropped first, so that the link
  // attach() makes in its place is the only one (a program attached twice would run twice).
  // Pinned links lose nothing by it.
  for (bpf_link* l : links_) bpf_link__destroy(l);
  links_.clear();
  attach(linkDir_);
}

std::vector<int> SockLbPrograms::iteratorLinks() {
  if (iterLinks_.empty() && staleGap_.empty()) {
    // Before 6.5 (Debian 12 runs 6.1) the kernel has no bpf_sock_destroy: service load
    // balancing works without it, so that is a gap to report, not an error. Any other failure
    // to load the iterators (a missing capability) is one.
    btf* vmlinux = btf__load_vmlinux_btf();
    const bool haveDestroy =
        vmlinux && btf__find_by_name_kind(vmlinux, "bpf_sock_destroy", BTF_KIND_FUNC) > 0;
    btf__free(vmlinux);
    if (!haveDestroy) {
      struct utsname u {};
      uname(&u);
      staleGap_ = fmt::format(
          "this kernel ({}) cannot destroy sockets from BPF (bpf_sock_destroy needs Linux 6.5): "
          "a connected UDP socket or a connecting TCP socket of a removed endpoint is not "
          "closed for its application",
          u.release);
      return {};
    }
    staleSkel_ = stale_sockets::open();
    if (!staleSkel_) throwBpfError("opening the stale_sockets BPF object", errno);
    // The iterators read the socket programs' maps, not copies of their own.
    const std::pair<bpf_map*, int> shared[] = {
        {staleSkel_->maps.sp_rev_buckets, bpf_map__fd(skel_->maps.sp_rev_buckets)},
        {staleSkel_->maps.sp_destroy, bpf_map__fd(skel_->maps.sp_destroy)}};
    for (auto [map, fd] : shared) {
      if (int err = bpf_map__reuse_fd(map, fd); err)
        throwBpfError("sharing a map with the iterators", err);
    }
    if (int err = stale_sockets::load(staleSkel_); err) {
      stale_sockets::destroy(staleSkel_);
      staleSkel_ = nullptr;
      throwBpfError("loading the stale-socket iterators", err);
    }
    for (bpf_program* prog : {staleSkel_->progs.sp_destroy_udp, staleSkel_->progs.sp_destroy_tcp}) {
      bpf_link* link = bpf_program__attach_iter(prog, nullptr);
      if (!link)
        throwBpfError(fmt::format("creating the {} iterator", bpf_program__name(prog)), errno);
      iterLinks_.push_back(link);
    }
  }
  std::vector<int> fds;
  for (bpf_link* l : iterLinks_) fds.push_back(bpf_link__fd(l));
  return fds;
}

uint64_t SockLbPrograms::destroyedSockets() const {
  return staleSkel_ ? __atomic_load_n(&staleSkel_->bss->sp_destroyed, __ATOMIC_RELAXED) : 0;
}

SockLbPrograms::~SockLbPrograms() {
  // Pinned links and maps outlive the process: the data plane keeps working while sliceproxy
  // restarts. bpf_link__destroy of a pinned link only drops this process's reference.
  for (bpf_link* l : links_) bpf_link__destroy(l);
  for (bpf_link* l : iterLinks_) bpf_link__destroy(l);
  if (staleSkel_) stale_sockets::destroy(staleSkel_);
  if (skel_) sock_lb::destroy(skel_);
}

int SockLbPrograms::servicesFd() const {
  return bpf_map__fd(skel_->maps.sp_services);
}
int SockLbPrograms::slotsFd() const {
  return bpf_map__fd(skel_->maps.sp_slots);
}
int SockLbPrograms::destroyFd() const {
  return bpf_map__fd(skel_->maps.sp_destroy);
}
int SockLbPrograms::hairpinFd() const {
  return bpf_map__fd(skel_->maps.sp_hairpin);
}
int SockLbPrograms::membersFd() const {
  return bpf_map__fd(skel_->maps.sp_members);
}
int SockLbPrograms::affinityFd() const {
  return bpf_map__fd(skel_->maps.sp_affinity);
}
int SockLbPrograms::reverseFd() const {
  return bpf_map__fd(skel_->maps.sp_rev_buckets);
}

uint64_t SockLbPrograms::removePinned(const std::string& pinDir) {
  uint64_t removed = 0;
  std::error_code ec;
  if (!fs::exists(pinDir, ec)) return 0;
  // Links first: unpinning the last reference detaches the program from the cgroup before
  // the maps it reads go away.
  for (const char* sub : {"links", "maps"}) {
    const fs::path dir = fs::path(pinDir) / sub;
    if (!fs::exists(dir, ec)) continue;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (std::string_view(sub) == "links") {
        // Detach now: dropping the last reference frees a link from a workqueue, later.
        const int fd = bpf_obj_get(entry.path().c_str());
        if (fd >= 0) {
          const int err = bpf_link_detach(fd);
          close(fd);
          if (err && err != -EINVAL) throwBpfError("detaching " + entry.path().string(), err);
        }
      }
      if (unlink(entry.path().c_str()) != 0)
        throwBpfError("unpinning " + entry.path().string(), errno);
      ++removed;
    }
    if (rmdir(dir.c_str()) != 0) throwBpfError("removing " + dir.string(), errno);
  }
  if (rmdir(pinDir.c_str()) != 0 && errno != ENOENT) throwBpfError("removing " + pinDir, errno);
  return removed;
}

}  // namespace sliceproxy::backends::ebpf
