// A kubeconfig file. loadKubeconfig reads a path (relative file names resolve against its
// directory), so each input is written to a file in a private directory first.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>

#include "slice-watch/kubeconfig.h"

namespace {

// Removed when libFuzzer exits normally (a crash leaves it, beside the crashing input).
struct PrivateDir {
  std::string dir, path;
  PrivateDir() {
    // tmpfs when there is one: a file rewritten a million times on a disk file system costs
    // block I/O that is none of the decoder's work (here 2,100 inputs/s on /tmp, 5,400 on tmpfs).
    std::string tmpl = access("/dev/shm", W_OK) == 0 ? "/dev/shm/fuzz-kubeconfig.XXXXXX"
                                                     : "/tmp/fuzz-kubeconfig.XXXXXX";
    if (!mkdtemp(tmpl.data())) abort();
    dir = tmpl;
    path = dir + "/config";
  }
  ~PrivateDir() {
    unlink(path.c_str());
    rmdir(dir.c_str());
  }
};

const std::string& kubeconfigPath() {
  static const PrivateDir d;
  return d.path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = kubeconfigPath();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    auto cfg = sliceproxy::slicewatch::loadKubeconfig(path);
    (void)cfg;
  } catch (const std::runtime_error&) {
    // A refused kubeconfig: the message is the product.
  }
  return 0;
}
