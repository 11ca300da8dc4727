#include "backends/ebpf/stale_sockets.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <utility>

namespace sliceproxy::backends::ebpf {

namespace fs = std::filesystem;

namespace {

// At most this many namespaces per run: a bound on the work one sync can cause.
constexpr size_t kMaxNamespaces = 4096;

// One fd per distinct network namespace of the processes in the cgroup tree under `root`.
std::vector<int> namespacesOf(const std::string& root, std::string& error) {
  std::set<std::pair<dev_t, ino_t>> seen;
  std::vector<int> fds;
  std::error_code ec;
  std::vector<fs::path> dirs{root};
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) dirs.push_back(it->path());
  }
  for (const auto& dir : dirs) {
    std::ifstream procs(dir / "cgroup.procs");
    std::string pid;
    while (procs >> pid && fds.size() < kMaxNamespaces) {
      const int fd = open(("/proc/" + pid + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        // ENOENT/ESRCH: the process exited meanwhile. EACCES (no CAP_SYS_PTRACE) would
        // otherwise leave its sockets in place without a word.
        if (errno != ENOENT && errno != ESRCH && error.empty()) {
          error = fmt::format("opening /proc/{}/ns/net: {}", pid, std::strerror(errno));
        }
        continue;
      }
      struct stat st {};
      if (fstat(fd, &st) != 0 || !seen.insert({st.st_dev, st.st_ino}).second) {
        close(fd);
        continue;
      }
      fds.push_back(fd);
    }
  }
  if (fds.size() >= kMaxNamespaces) {
    error = fmt::format("more than {} network namespaces under {}: the rest were not visited",
                        kMaxNamespaces, root);
  }
  return fds;
}

}  // namespace

StaleSocketReport destroyStaleSockets(SockLbPrograms& progs, const std::vector<sp_backend>& gone) {
  StaleSocketReport report;
  if (gone.empty()) return report;
  std::vector<int> links;
  try {
    links = progs.iteratorLinks();
  } catch (const std::exception& e) {
    report.error = e.what();
    return report;
  }
  if (links.empty()) return report;  // the kernel cannot; said once at start (staleSocketsGap)
  const int targets = progs.destroyFd();
  const uint8_t one = 1;
  std::vector<sp_backend> written;
  for (const auto& b : gone) {
    if (written.size() >= SP_DESTROY_MAX) break;
    if (bpf_map_update_elem(targets, &b, &one, BPF_ANY) == 0) written.push_back(b);
  }
  const uint64_t before = progs.destroyedSockets();
  std::vector<int> nsFds = namespacesOf(progs.cgroupRoot(), report.error);
  // setns() moves only the calling thread: a thread of its own walks the namespaces, and its
  // namespace goes away with it.
  std::string walkError;
  std::thread walker([&] {
    for (int ns : nsFds) {
      if (setns(ns, CLONE_NEWNET) != 0) {
        walkError = fmt::format("entering a network namespace: {}", std::strerror(errno));
        continue;
      }
      for (int link : links) {
        const int it = bpf_iter_create(link);
        if (it < 0) {
          walkError = fmt::format("socket iterator: {}", std::strerror(errno));
          continue;
        }
        char buf[256];
        while (read(it, buf, sizeof(buf)) > 0) {
        }
        close(it);
      }
    }
  });
  walker.join();
  for (int fd : nsFds) close(fd);
  for (const auto& b : written) bpf_map_delete_elem(targets, &b);
  report.namespaces = static_cast<uint32_t>(nsFds.size());
  report.destroyed = progs.destroyedSockets() - before;
  if (report.error.empty()) report.error = walkError;
  return report;
}

}  // namespace sliceproxy::backends::ebpf
