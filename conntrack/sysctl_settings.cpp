#include "conntrack/sysctl_settings.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>

namespace sliceproxy::conntrack {

namespace {

int64_t seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

std::optional<int64_t> readInt(const std::string& path, int& err) {
  std::ifstream in(path);
  if (!in) {
    err = errno;
    return std::nullopt;
  }
  int64_t v = 0;
  if (!(in >> v)) {
    err = EINVAL;
    return std::nullopt;
  }
  return v;
}

int writeInt(const std::string& path, int64_t value) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return errno;
  int err = std::fprintf(f, "%lld\n", static_cast<long long>(value)) < 0 ? errno : 0;
  if (std::fclose(f) != 0 && err == 0) err = errno;
  return err;
}

std::string why(int err) {
  if (err == EROFS) return "read-only file system (a container without a writable /proc/sys?)";
  if (err == EACCES || err == EPERM) return "permission denied (needs CAP_NET_ADMIN in the host)";
  return std::strerror(err);
}

}  // namespace

std::vector<SysctlWrite> plannedSysctls(const proxier::ConntrackSettings& s, int cpus) {
  std::vector<SysctlWrite> out;
  // maxPerCore 0 leaves the limit as it is (kube-proxy's meaning).
  if (s.maxPerCore > 0) {
    int64_t max = static_cast<int64_t>(s.maxPerCore) * std::max(cpus, 1);
    if (max < s.min) max = s.min;
    out.push_back({"net/netfilter/nf_conntrack_max", max, "conntrack.maxPerCore/min"});
  }
  auto timeout = [&](std::chrono::nanoseconds d, const char* path, const char* setting) {
    if (d.count() > 0) out.push_back({path, seconds(d), setting});
  };
  timeout(s.tcpEstablishedTimeout, "net/netfilter/nf_conntrack_tcp_timeout_established",
          "conntrack.tcpEstablishedTimeout");
  timeout(s.tcpCloseWaitTimeout, "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
          "conntrack.tcpCloseWaitTimeout");
  if (s.tcpBeLiberal) {
    out.push_back({"net/netfilter/nf_conntrack_tcp_be_liberal", 1, "conntrack.tcpBeLiberal"});
  }
  timeout(s.udpTimeout, "net/netfilter/nf_conntrack_udp_timeout", "conntrack.udpTimeout");
  timeout(s.udpStreamTimeout, "net/netfilter/nf_conntrack_udp_timeout_stream",
          "conntrack.udpStreamTimeout");
  return out;
}

ApplyReport applyConntrackSettings(const proxier::ConntrackSettings& s, int cpus,
                                   const std::string& sysctlRoot, const std::string& hashsizePath) {
  ApplyReport report;
  for (const auto& w : plannedSysctls(s, cpus)) {
    const std::string path = sysctlRoot + "/" + w.path;
    int err = 0;
    auto current = readInt(path, err);
    if (!current && err == ENOENT) {
      report.missing = true;
      continue;
    }
    // An administrator's higher conntrack limit stays: sliceproxy only raises it.
    const bool isMax = w.path == "net/netfilter/nf_conntrack_max";
    if (current && (*current == w.value || (isMax && *current > w.value))) {
      report.unchanged.push_back(w.path);
      continue;
    }
    if (int werr = writeInt(path, w.value); werr != 0) {
      report.failed.push_back(w.path);
      spdlog::warn("{}: cannot set {} to {}: {}; the kernel keeps {}", w.setting, w.path, w.value,
                   why(werr), current ? std::to_string(*current) : "its value");
      continue;
    }
    report.written.push_back(w.path);
    spdlog::info("{}: set {} to {} (was {})", w.setting, w.path, w.value,
                 current ? std::to_string(*current) : "unreadable");
    if (isMax) {
      // The kernel sizes nothing from nf_conntrack_max: a bigger table with the old hash size
      // makes long bucket chains. Writing hashsize only works from the initial network
      // namespace, so it is skipped when already large enough.
      int herr = 0;
      auto hash = readInt(hashsizePath, herr);
      const int64_t want = w.value / 4;
      if (hash && *hash >= want) continue;
      if (int e = writeInt(hashsizePath, want); e != 0) {
        report.failed.push_back(hashsizePath);
        spdlog::warn(
            "conntrack.maxPerCore/min: cannot raise the conntrack hash table ({}) to {}: "
            "{}; lookups get slower as the table fills",
            hashsizePath, want, why(e));
      } else {
        report.written.push_back(hashsizePath);
        spdlog::info("conntrack.maxPerCore/min: set {} to {}", hashsizePath, want);
      }
    }
  }
  return report;
}

}  // namespace sliceproxy::conntrack
