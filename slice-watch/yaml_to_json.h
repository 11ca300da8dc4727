#pragma once
// YAML manifests become JSON text so that one decoder (json_decoder.h) handles every format.
// Scalars follow the YAML 1.2 core schema, as kubectl reads them: a plain (unquoted) scalar is
// null (null, ~, empty), a boolean (true/false), an integer (decimal, 0o octal, 0x hex) or a float
// when it looks like one, and a string otherwise; a quoted scalar is always a string. YAML 1.1's
// yes/no/on/off stay strings, so `ready: yes` is rejected as the wrong type rather than guessed.

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sliceproxy::slicewatch {

struct YamlDocument {
  std::string json;
  int line = 0;  // 1-based line where the document's content starts
};

// The YAML text was not YAML, or used something JSON cannot hold (a non-scalar mapping key).
class YamlError : public std::runtime_error {
 public:
  YamlError(int line, int column, const std::string& what)
      : std::runtime_error(what), line(line), column(column) {}
  int line, column;  // 1-based
};

// Converts each non-empty document of a (possibly multi-document) YAML stream. Throws YamlError,
// also when the JSON would exceed yamlExpansionLimit(text.size()) bytes: aliases are expanded
// (JSON has none), and a few nested aliases could otherwise describe gigabytes.
std::vector<YamlDocument> yamlToJson(std::string_view text);

// 8 x the YAML plus 1 MiB: well above what an anchor shared by every endpoint of a large slice
// adds, far below an alias bomb.
size_t yamlExpansionLimit(size_t textBytes);

}  // namespace sliceproxy::slicewatch
