#pragma once
// Decoding YAML manifests: each document is converted to JSON (yaml_to_json.h) and goes through
// the one JSON decoder, so YAML and JSON inputs follow exactly the same rules.

#include <string_view>
#include <vector>

#include "slice-watch/decoded_object.h"

namespace sliceproxy::slicewatch {

// Every object of every document, in order; a document may itself be a List. A YAML syntax
// error is one malformed_yaml Rejection naming the line, and nothing else from the text: a
// half-parsed stream is not a description of anything.
std::vector<DecodeResult> decodeYaml(std::string_view text, const DecodeOptions& opts);

}  // namespace sliceproxy::slicewatch
