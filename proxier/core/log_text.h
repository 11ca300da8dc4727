#pragma once
// Text from outside (file content, object names, server answers) made safe for a log line:
// control characters would let a manifest rewrite the operator's terminal or forge log lines,
// and bytes that are not UTF-8 break every consumer that decodes the log.

#include <string>
#include <string_view>

namespace sliceproxy::proxier {

// Valid UTF-8 other than control characters is kept; every other byte becomes \xNN.
std::string printable(std::string_view text);

}  // namespace sliceproxy::proxier
