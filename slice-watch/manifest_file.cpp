#include "slice-watch/manifest_file.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

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
                                             const DecodeOptions& opts) {
  auto format = manifestFormat(path.filename().string());
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) {
    return {
        proxier::Rejection{opts.origin, "", "", "", std::string(reason::kReadError),
                           fmt::format("cannot read {}: {}", path.string(), std::strerror(errno))}};
  }
  return decodeManifest(text.view(), format.value_or(ManifestFormat::Yaml), opts);
}

}  // namespace sliceproxy::slicewatch
