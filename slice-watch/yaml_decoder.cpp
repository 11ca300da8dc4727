#include "slice-watch/yaml_decoder.h"

#include <fmt/format.h>

#include "slice-watch/json_decoder.h"
#include "slice-watch/reasons.h"
#include "slice-watch/yaml_to_json.h"

namespace sliceproxy::slicewatch {

std::vector<DecodeResult> decodeYaml(std::string_view text, const DecodeOptions& opts) {
  std::vector<YamlDocument> docs;
  try {
    docs = yamlToJson(text);
  } catch (const YamlError& e) {
    return {proxier::Rejection{
        opts.origin, "", "", "", std::string(reason::kMalformedYaml),
        fmt::format("malformed YAML at line {}, column {}: {}", e.line, e.column, e.what())}};
  }
  std::vector<DecodeResult> out;
  for (const auto& doc : docs) {
    auto results = decodeJsonDocument(doc.json, opts);
    for (auto& r : results) out.push_back(std::move(r));
  }
  return out;
}

}  // namespace sliceproxy::slicewatch
