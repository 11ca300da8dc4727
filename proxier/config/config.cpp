#include "proxier/config/config.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace sliceproxy::proxier {

std::string resolveNodeName(const Config& cfg) {
  std::string name = cfg.hostnameOverride;
  if (name.empty()) {
    if (const char* env = std::getenv("NODE_NAME")) name = env;
  }
  if (name.empty()) {
    char buf[256] = {};
    if (gethostname(buf, sizeof(buf) - 1) == 0) name = buf;
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

}  // namespace sliceproxy::proxier
