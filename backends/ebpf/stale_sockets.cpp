#include "backends/ebpf/stale_sockets.h"

#include "backends/ebpf/client_namespaces.h"

#include <bpf/bpf.h>
#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace sliceproxy::backends::ebpf {

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
  std::vector<int> nsFds = clientNamespaces(progs.cgroupRoot(), report.error);
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
