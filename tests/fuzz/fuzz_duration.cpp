// Go-style durations (flags and KubeProxyConfiguration). What parses must print as a duration
// that parses back to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "proxier/config/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto d = sliceproxy::proxier::parseDuration(text);
  if (!d) return 0;
  auto printed = sliceproxy::proxier::formatDuration(*d);
  auto back = sliceproxy::proxier::parseDuration(printed);
  if (!back || *back != *d) {
    std::fprintf(stderr, "\"%.*s\" parsed as %lld ns, printed \"%s\", which %s\n",
                 static_cast<int>(size), text.data(), static_cast<long long>(d->count()),
                 printed.c_str(), back ? "parses to another value" : "does not parse");
    std::abort();
  }
  return 0;
}
