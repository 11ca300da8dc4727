// A YAML manifest file as the manifest-directory source reads it (multi-document, Lists,
// anchors and aliases).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "slice-watch/manifest_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  sliceproxy::slicewatch::DecodeOptions opts{"fuzz.yaml"};
  auto results = sliceproxy::slicewatch::decodeManifest(
      text, sliceproxy::slicewatch::ManifestFormat::Yaml, opts);
  (void)results;
  return 0;
}
