// RFC 3339 timestamps (metav1.Time, the last-change-trigger-time annotation, ExecCredential
// expirationTimestamp).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "slice-watch/rfc3339.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = sliceproxy::slicewatch::parseRfc3339(text);
  (void)t;
  return 0;
}
