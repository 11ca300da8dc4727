// Service, EndpointSlice and Node JSON as a manifest file or a single API object holds them: a
// single object, a List or a typed list.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "slice-watch/json_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  sliceproxy::slicewatch::DecodeOptions opts{"fuzz.json"};
  auto results = sliceproxy::slicewatch::decodeJsonDocument(text, opts);
  (void)results;
  return 0;
}
