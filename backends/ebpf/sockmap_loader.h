#pragma once
// Loads the sockmap shortcut (bpf/sockmap.bpf.c, --sockmap-shortcut) beside the socket load
// balancing programs, under the same pin directory: its maps are pinned under <pin dir>/maps
// and adopted by the next run; its sockops program's cgroup link and its sk_msg program's
// sockhash link are pinned under <pin dir>/links, and a restart swaps the new programs into
// them (BPF_LINK_UPDATE), so connections keep their shortcut across a restart.

#include <cstdint>
#include <string>

struct sockmap;

namespace sliceproxy::backends::ebpf {

struct SockmapCounters {
  uint64_t inserted = 0;   // sockets put into the sockhash
  uint64_t redirects = 0;  // sends handed to the peer socket
  uint64_t bytes = 0;      // their bytes
  uint64_t stack = 0;      // sockets whose first send found no peer (they use the stack)
  uint64_t skipped = 0;    // sockets that carried payload before they were established
};

class SockmapPrograms {
 public:
  // cgroupRoot: the cgroup v2 directory (already checked by the socket LB loader); pinDir:
  // already created, on a bpf filesystem. Throws std::runtime_error naming what failed.
  SockmapPrograms(const std::string& pinDir, const std::string& cgroupRoot,
                  uint32_t sockEntries = 65536);
  ~SockmapPrograms();
  SockmapPrograms(const SockmapPrograms&) = delete;
  SockmapPrograms& operator=(const SockmapPrograms&) = delete;

  int sockhashFd() const;
  // This run's counters (a restart starts them at 0).
  SockmapCounters counters() const;
  bool adoptedMaps() const { return adoptedMaps_; }
  int updatedLinks() const { return updatedLinks_; }

  // Unpins the shortcut's links (detaching its programs: no new connection takes it) and maps;
  // returns how many objects went. Connections already in the sockhash keep their shortcut
  // until they close: taking a socket out of it would drop the bytes already handed to it and
  // not yet read. Throws std::runtime_error on failure.
  static uint64_t removePinned(const std::string& pinDir);

 private:
  void attachSockops(const std::string& path, const std::string& cgroupRoot);
  void attachSkMsg(const std::string& path);
  sockmap* skel_ = nullptr;
  bool adoptedMaps_ = false;
  int updatedLinks_ = 0;
};

}  // namespace sliceproxy::backends::ebpf
