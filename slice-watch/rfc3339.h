#pragma once
// RFC 3339 timestamps as the Kubernetes API writes them (metav1.Time, and the
// endpoints.kubernetes.io/last-change-trigger-time annotation, which is RFC3339Nano).

#include <chrono>
#include <optional>
#include <string_view>

namespace sliceproxy::slicewatch {

// "2024-05-01T12:34:56Z", "2024-05-01T12:34:56.123456789Z", "...+02:00"; nullopt for anything
// else (including impossible dates and times). Times outside the clock's range (before 1678,
// after 2262) saturate to time_point::min() / max().
std::optional<std::chrono::system_clock::time_point> parseRfc3339(std::string_view text);

}  // namespace sliceproxy::slicewatch
