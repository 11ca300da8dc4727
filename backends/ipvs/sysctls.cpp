#include "backends/ipvs/sysctls.h"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace sliceproxy::backends::ipvs {

namespace {

std::string readValue(const std::string& path) {
  std::ifstream in(path);
  std::string v;
  std::getline(in, v);
  return v;
}

// Writes the value unless it is already there; logs either way.
std::string setSysctl(const std::string& procRoot, const std::string& name,
                      const std::string& value) {
  std::string rel = name;
  for (auto& c : rel) {
    if (c == '.') c = '/';
  }
  std::string path = procRoot + "/" + rel;
  std::string old = readValue(path);
  if (old == value) {
    spdlog::info("ipvs: sysctl {} is {} already", name, value);
    return "";
  }
  std::ofstream out(path);
  out << value << "\n";
  out.flush();
  if (!out) return "setting sysctl " + name + "=" + value + " (" + path + "): cannot write";
  spdlog::info("ipvs: sysctl {} set to {} (was {})", name, value, old.empty() ? "unset" : old);
  return "";
}

bool kernelBefore(int major, int minor) {
  utsname u{};
  if (uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma < major || (ma == major && mi < minor);
}

}  // namespace

std::string applyIpvsSysctls(const std::string& procRoot) {
  std::vector<std::pair<std::string, std::string>> want = {
      {"net.ipv4.vs.conntrack", "1"},
      {"net.ipv4.vs.expire_nodest_conn", "1"},
      {"net.ipv4.vs.expire_quiescent_template", "1"},
      {"net.ipv4.conf.all.arp_ignore", "1"},
      {"net.ipv4.conf.all.arp_announce", "2"},
  };
  // As kube-proxy: kernels before 5.9 drop the first SYN of a reused connection for a second
  // with conn_reuse_mode=1; later ones fixed that and keep the default.
  if (kernelBefore(5, 9)) want.emplace_back("net.ipv4.vs.conn_reuse_mode", "0");
  for (const auto& [name, value] : want) {
    if (std::string err = setSysctl(procRoot, name, value); !err.empty()) return err;
  }
  return "";
}

}  // namespace sliceproxy::backends::ipvs
