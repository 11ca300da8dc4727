// One line of a watch stream ({"type": ..., "object": ...}); the first byte picks the kind.
#include <string>

#include "slice-watch/watch_event.h"
#include "tests/fuzz/kind_byte.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = sliceproxy::fuzz::splitKind(data, size);
  sliceproxy::slicewatch::DecodeOptions opts{"fuzz watch"};
  std::string error;
  auto ev = sliceproxy::slicewatch::decodeWatchEvent(in.rest, in.kind, in.namespaced, opts, error);
  (void)ev;
  return 0;
}
