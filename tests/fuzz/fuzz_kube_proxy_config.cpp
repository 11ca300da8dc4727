// A KubeProxyConfiguration file (--config). What is accepted must render (--write-config-to)
// into a file that is accepted again with the same result: the round trip is how operators
// carry a configuration between nodes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "proxier/config/kube_proxy_config.h"

using sliceproxy::proxier::applyConfigText;
using sliceproxy::proxier::Config;
using sliceproxy::proxier::renderConfig;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto noFlags = [](const std::string&) { return false; };
  Config cfg;
  std::string minSync, sync;
  auto r = applyConfigText(text, "fuzz.yaml", cfg, minSync, sync, noFlags);
  if (!r.error.empty()) return 0;
  std::string rendered = renderConfig(cfg);
  Config again;
  std::string minSync2, sync2;
  auto r2 = applyConfigText(rendered, "rendered", again, minSync2, sync2, noFlags);
  if (!r2.error.empty() || renderConfig(again) != rendered) {
    std::fprintf(stderr,
                 "accepted configuration does not round-trip: %s\n--- rendered:\n%s\n--- read "
                 "back and rendered again:\n%s\n",
                 r2.error.c_str(), rendered.c_str(), renderConfig(again).c_str());
    std::abort();
  }
  return 0;
}
