#include "backends/ebpf/client_namespaces.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <utility>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace sliceproxy::backends::ebpf {

namespace fs = std::filesystem;

namespace {

// At most this many namespaces per walk: a bound on the work one sync can cause.
constexpr size_t kMaxNamespaces = 4096;

std::pair<dev_t, ino_t> identity(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return {0, 0};
  return {st.st_dev, st.st_ino};
}

}  // namespace

std::vector<int> clientNamespaces(const std::string& root, std::string& error) {
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
        // otherwise leave its namespace out without a word.
        if (errno != ENOENT && errno != ESRCH && error.empty()) {
          error = fmt::format("opening /proc/{}/ns/net: {}", pid, std::strerror(errno));
        }
        continue;
      }
      if (!seen.insert(identity(fd)).second) {
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

std::vector<NamespaceAddresses> clientNamespaceAddresses(const std::string& root,
                                                         std::string& error) {
  std::vector<int> fds = clientNamespaces(root, error);
  std::vector<NamespaceAddresses> out;
  const int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  const auto own = self >= 0 ? identity(self) : std::pair<dev_t, ino_t>{0, 0};
  if (self >= 0) close(self);
  // setns() moves only the calling thread: a thread of its own visits the namespaces, and its
  // namespace goes away with it.
  std::string walkError;
  std::thread walker([&] {
    for (int ns : fds) {
      if (identity(ns) == own) continue;
      if (setns(ns, CLONE_NEWNET) != 0) {
        walkError = fmt::format("entering a network namespace: {}", std::strerror(errno));
        continue;
      }
      NamespaceAddresses n;
      const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      socklen_t len = sizeof(n.cookie);
      const bool ok = s >= 0 && getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &n.cookie, &len) == 0;
      if (s >= 0) close(s);
      if (!ok) {
        walkError = fmt::format("SO_NETNS_COOKIE: {}", std::strerror(errno));
        continue;
      }
      ifaddrs* list = nullptr;
      if (getifaddrs(&list) != 0) {
        walkError =
            fmt::format("listing a network namespace's addresses: {}", std::strerror(errno));
        continue;
      }
      for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || (i->ifa_flags & IFF_LOOPBACK)) continue;
        proxier::IpAddr a;
        if (i->ifa_addr->sa_family == AF_INET) {
          std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
          const auto* s6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
          if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr)) continue;
          std::memcpy(a.bytes.data(), &s6->sin6_addr, 16);
          a.family = proxier::IpFamily::V6;
        } else {
          continue;
        }
        n.addresses.push_back(a);
      }
      freeifaddrs(list);
      out.push_back(std::move(n));
    }
  });
  walker.join();
  for (int fd : fds) close(fd);
  if (error.empty()) error = walkError;
  return out;
}

}  // namespace sliceproxy::backends::ebpf
