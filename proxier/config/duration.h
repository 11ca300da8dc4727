#pragma once
// Go-style durations ("1s", "500ms", "1m30s", "1h"), the spelling kube-proxy's flags and
// KubeProxyConfiguration use.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sliceproxy::proxier {

std::optional<std::chrono::nanoseconds> parseDuration(std::string_view text);
std::string formatDuration(std::chrono::nanoseconds d);

}  // namespace sliceproxy::proxier
