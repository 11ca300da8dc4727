#include "backends/ebpf/kernel_probe.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>

#include "backends/ebpf/sock_lb_loader.h"

namespace sliceproxy::backends::ebpf {

std::string kernelSupport() {
  // bpf_set_retval in cgroup sock_addr programs (ECONNREFUSED for services without endpoints)
  // arrived in 5.18; the programs are CO-RE and need the kernel's BTF.
  utsname u{};
  int major = 0, minor = 0;
  if (uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
      (major < 5 || (major == 5 && minor < 18))) {
    return std::string("kernel ") + u.release + " is older than 5.18 (bpf_set_retval)";
  }
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return "no kernel BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF)";
  }
  if (defaultCgroupRoot().empty()) return "no cgroup2 filesystem mounted";
  return "";
}

}  // namespace sliceproxy::backends::ebpf
