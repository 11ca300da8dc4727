#include "slice-watch/manifest_file.h"

#include <fmt/format.h>

#include "proxier/config/bounded_file.h"
#include "slice-watch/json_decoder.h"
#include "slice-watch/reasons.h"
#include "slice-watch/yaml_decoder.h"

namespace sliceproxy::slicewatch {

std::optional<ManifestFormat> manifestFormat(std::string_view name) {
  if (name.empty() || name.front() == '.') return std::nullopt;
  if (name.ends_with(".yaml") || name.ends_with(".yml")) return ManifestFormat::Yaml;
  if (name.ends_with(".json")) return ManifestFormat::Json;
  return std::nullopt;
}

std::vector<DecodeResult> decodeManifest(std::string_view text, ManifestFormat format,
                                         const DecodeOptions& opts) {
  return format == ManifestFormat::Json ? decodeJsonDocument(text, opts) : decodeYaml(text, opts);
}

std::vector<DecodeResult> decodeManifestFile(const std::filesystem::path& path,
                                             const DecodeOptions& opts, uint64_t maxBytes) {
  auto format = manifestFormat(path.filename().string());
  auto read = proxier::readBoundedFile(path, maxBytes);
  if (!read.text) {
    bool refused = !read.transient;
    std::string why = read.tooLarge ? read.error + " (--manifest-max-file-bytes)" : read.error;
    return {proxier::Rejection{opts.origin, "", "", "",
                               std::string(refused ? reason::kFileRefused : reason::kReadError),
                               fmt::format("cannot read {}: {}", path.string(), why)}};
  }
  return decodeManifest(*read.text, format.value_or(ManifestFormat::Yaml), opts);
}

}  // namespace sliceproxy::slicewatch
