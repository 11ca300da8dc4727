#include "backends/ebpf/sockmap_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "backends/ebpf/bpf_error.h"
#include "sockmap.skel.h"

namespace sliceproxy::backends::ebpf {

namespace fs = std::filesystem;

namespace {

// Pinned names (bpffs refuses dots); the maps keep their BPF names.
constexpr const char* kSockopsLink = "sockops";
constexpr const char* kSkMsgLink = "sk_msg";
const char* const kMaps[] = {"sp_sockhash", "sp_sock_state", "sp_sock_active"};

// BPF_LINK_TYPE_SOCKMAP (kernel 6.10) and its bpf_link_info member, which this system's uapi
// headers may predate.
constexpr uint32_t kLinkTypeSockmap = 14;
struct SockmapLinkInfo {
  uint32_t mapId;
  uint32_t attachType;
};

// Pins fd beside path and renames it over path: an older link there is unpinned (and detaches)
// only once the new one is in place.
void pinOver(int fd, const std::string& path) {
  const std::string tmp = path + "_new";
  unlink(tmp.c_str());
  if (int err = bpf_obj_pin(fd, tmp.c_str()); err) throwBpfError("pinning link " + tmp, err);
  if (rename(tmp.c_str(), path.c_str()) != 0) throwBpfError("pinning link " + path, errno);
}

}  // namespace

SockmapPrograms::SockmapPrograms(const std::string& pinDir, const std::string& cgroupRoot,
                                 uint32_t sockEntries) {
  const fs::path pin(pinDir);
  skel_ = sockmap::open();
  if (!skel_) throwBpfError("opening the sockmap BPF object", errno);
  bpf_map__set_max_entries(skel_->maps.sp_sockhash, sockEntries);
  bpf_map__set_max_entries(skel_->maps.sp_sock_active, sockEntries);
  bool allPinned = true;
  for (const char* name : kMaps) {
    bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name);
    const std::string path = (pin / "maps" / name).string();
    allPinned = allPinned && fs::exists(path);
    if (int err = map ? bpf_map__set_pin_path(map, path.c_str()) : -ENOENT; err) {
      sockmap::destroy(skel_);
      skel_ = nullptr;
      throwBpfError("pin path " + path, err);
    }
  }
  adoptedMaps_ = allPinned;
  if (int err = sockmap::load(skel_); err) {
    sockmap::destroy(skel_);
    skel_ = nullptr;
    throwBpfError(
        fmt::format("loading the sockmap shortcut programs (maps pinned under {}/maps)", pinDir),
        err);
  }
  try {
    // The sk_msg program first: a socket the sockops program inserts then has it at once.
    attachSkMsg((pin / "links" / kSkMsgLink).string());
    attachSockops((pin / "links" / kSockopsLink).string(), cgroupRoot);
  } catch (...) {
    sockmap::destroy(skel_);
    skel_ = nullptr;
    throw;
  }
}

void SockmapPrograms::attachSkMsg(const std::string& path) {
  const int prog = bpf_program__fd(skel_->progs.sp_sk_msg);
  const int map = bpf_map__fd(skel_->maps.sp_sockhash);
  bpf_map_info minfo{};
  uint32_t mlen = sizeof(minfo);
  if (int err = bpf_obj_get_info_by_fd(map, &minfo, &mlen); err)
    throwBpfError("sp_sockhash info", err);
  const int old = bpf_obj_get(path.c_str());
  if (old >= 0) {
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    SockmapLinkInfo sm{};
    const bool got = bpf_obj_get_info_by_fd(old, &info, &len) == 0;
    std::memcpy(&sm, &info.cgroup, sizeof(sm));  // the union member after type, id, prog_id
    if (got && info.type == kLinkTypeSockmap && sm.mapId == minfo.id &&
        sm.attachType == BPF_SK_MSG_VERDICT) {
      const int err = bpf_link_update(old, prog, nullptr);
      close(old);
      if (err) throwBpfError("updating the pinned link " + path, err);
      ++updatedLinks_;
      return;
    }
    close(old);
  }
  const int link = bpf_link_create(prog, map, BPF_SK_MSG_VERDICT, nullptr);
  if (link < 0) {
    throwBpfError(
        "attaching sp_sk_msg to the sockhash sp_sockhash (a sockmap link needs kernel 6.10+)",
        link);
  }
  try {
    pinOver(link, path);
  } catch (...) {
    close(link);
    throw;
  }
  close(link);  // the pin holds it
}

void SockmapPrograms::attachSockops(const std::string& path, const std::string& cgroupRoot) {
  const int cg = open(cgroupRoot.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) throwBpfError("--cgroup-root " + cgroupRoot, errno);
  struct stat cst {};
  fstat(cg, &cst);
  const uint64_t cgroupId = cst.st_ino;  // a cgroup v2 directory's inode is its cgroup id
  const int prog = bpf_program__fd(skel_->progs.sp_sockops);
  const int old = bpf_obj_get(path.c_str());
  if (old >= 0) {
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    const bool same = bpf_obj_get_info_by_fd(old, &info, &len) == 0 &&
                      info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cgroupId &&
                      info.cgroup.attach_type == BPF_CGROUP_SOCK_OPS;
    if (same) {
      const int err = bpf_link_update(old, prog, nullptr);
      close(old);
      close(cg);
      if (err) throwBpfError("updating the pinned link " + path, err);
      ++updatedLinks_;
      return;
    }
    close(old);
  }
  const int link = bpf_link_create(prog, cg, BPF_CGROUP_SOCK_OPS, nullptr);
  close(cg);
  if (link < 0) throwBpfError(fmt::format("attaching sp_sockops to cgroup {}", cgroupRoot), link);
  try {
    pinOver(link, path);
  } catch (...) {
    close(link);
    throw;
  }
  close(link);
}

SockmapPrograms::~SockmapPrograms() {
  // The pinned links and maps outlive the process, so connections keep their shortcut while
  // sliceproxy restarts.
  if (skel_) sockmap::destroy(skel_);
}

int SockmapPrograms::sockhashFd() const {
  return bpf_map__fd(skel_->maps.sp_sockhash);
}

SockmapCounters SockmapPrograms::counters() const {
  auto get = [](const uint64_t& v) { return __atomic_load_n(&v, __ATOMIC_RELAXED); };
  const auto* b = skel_->bss;
  return {get(b->sp_sm_inserted), get(b->sp_sm_redirects), get(b->sp_sm_bytes), get(b->sp_sm_stack),
          get(b->sp_sm_skipped)};
}

uint64_t SockmapPrograms::removePinned(const std::string& pinDir) {
  uint64_t removed = 0;
  const fs::path pin(pinDir);
  for (const char* name : {kSockopsLink, kSkMsgLink}) {
    const std::string path = (pin / "links" / name).string();
    const int fd = bpf_obj_get(path.c_str());
    if (fd < 0) continue;
    // Detach now: dropping the last reference frees a link from a workqueue, later.
    const int err = bpf_link_detach(fd);
    close(fd);
    if (err && err != -EINVAL) throwBpfError("detaching " + path, err);
    if (unlink(path.c_str()) != 0) throwBpfError("unpinning " + path, errno);
    ++removed;
  }
  for (const char* name : kMaps) {
    const std::string path = (pin / "maps" / name).string();
    if (unlink(path.c_str()) == 0) {
      ++removed;
    } else if (errno != ENOENT) {
      throwBpfError("unpinning " + path, errno);
    }
  }
  return removed;
}

}  // namespace sliceproxy::backends::ebpf
