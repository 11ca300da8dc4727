#pragma once
// Loads the socket load-balancing programs (bpf/sock_lb.bpf.c) and keeps them across restarts:
// maps are pinned under <pin dir>/maps and adopted by the next run with their contents; the
// cgroup attachments are BPF links pinned under <pin dir>/links, and a restart swaps the new
// program into each existing link (BPF_LINK_UPDATE), so no connect() ever runs unhooked.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct sock_lb;
struct stale_sockets;
struct bpf_link;

namespace sliceproxy::backends::ebpf {

struct LoaderOptions {
  std::string pinDir;               // on a bpf filesystem; created if missing
  std::string cgroupRoot;           // a cgroup v2 directory; "" = the first cgroup2 mount
  uint32_t serviceEntries = 65536;  // frontends
  uint32_t slotEntries = 1u << 20;  // backend slots (and members), both generations of every set
};

// The first cgroup2 mount point in /proc/self/mountinfo, or "" when there is none.
std::string defaultCgroupRoot();

class SockLbPrograms {
 public:
  // Throws std::runtime_error naming the object (pin path, cgroup, program) that failed.
  explicit SockLbPrograms(const LoaderOptions& opts);
  ~SockLbPrograms();
  SockLbPrograms(const SockLbPrograms&) = delete;
  SockLbPrograms& operator=(const SockLbPrograms&) = delete;

  int servicesFd() const;
  int slotsFd() const;
  int membersFd() const;
  int affinityFd() const;
  int reverseFd() const;
  int destroyFd() const;
  int hairpinFd() const;
  // Links of the stale-socket iterators (iter/udp, iter/tcp), created on first use; an
  // iterator made from one walks the sockets of the calling thread's network namespace. Empty
  // when the kernel cannot destroy sockets from BPF (bpf_sock_destroy, 6.5+): staleSocketsGap()
  // says why.
  std::vector<int> iteratorLinks();
  const std::string& staleSocketsGap() const { return staleGap_; }
  uint64_t destroyedSockets() const;
  // The maps were pinned by a previous run and are in use as it left them.
  bool adoptedMaps() const { return adoptedMaps_; }
  // Links that already existed and now run this run's programs.
  int updatedLinks() const { return updatedLinks_; }
  const std::string& cgroupRoot() const { return cgroupRoot_; }
  // Programs no longer attached where attach() put them (a link unpinned or detached by another
  // program: `rm` under the pin directory, `bpftool link detach`), named; empty when all are.
  std::string detached() const;
  // Attaches and pins again what detached() names, as at load. Throws like the constructor.
  void reattach();

  // Unpins every link (detaching its program) and map under pinDir and removes the
  // directories; returns how many objects went. Throws std::runtime_error on failure.
  static uint64_t removePinned(const std::string& pinDir);

 private:
  void attach(const std::string& linkDir);
  sock_lb* skel_ = nullptr;
  std::vector<bpf_link*> links_;        // created by this run (and pinned)
  stale_sockets* staleSkel_ = nullptr;  // the iterators' object, loaded on first use
  std::vector<bpf_link*> iterLinks_;    // not pinned: they live as long as this process
  std::string staleGap_;
  bool adoptedMaps_ = false;
  int updatedLinks_ = 0;
  std::string cgroupRoot_;
  std::string linkDir_;
  uint64_t cgroupId_ = 0;
};

}  // namespace sliceproxy::backends::ebpf
