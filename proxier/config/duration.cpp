#include "proxier/config/duration.h"

#include <cstdint>
#include <limits>

namespace sliceproxy::proxier {

namespace {

constexpr uint64_t kMaxNs = std::numeric_limits<int64_t>::max();

// Go's units; the micro sign comes in two spellings (U+00B5 and U+03BC), as in Go.
std::optional<uint64_t> unitNs(std::string_view unit) {
  if (unit == "ns") return 1;
  if (unit == "us" || unit == "\u00b5s" || unit == "\u03bcs") return 1'000;
  if (unit == "ms") return 1'000'000;
  if (unit == "s") return 1'000'000'000;
  if (unit == "m") return 60'000'000'000;
  if (unit == "h") return 3'600'000'000'000;
  return std::nullopt;
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

// Integer arithmetic with overflow checks, as Go's time.ParseDuration: a double sum would turn
// "99999999999h" into a negative duration instead of an error.
std::optional<std::chrono::nanoseconds> parseDuration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  if (s == "0") return std::chrono::nanoseconds(0);
  uint64_t total = 0;
  size_t i = 0;
  while (i < s.size()) {
    uint64_t whole = 0, frac = 0, fracScale = 1;
    bool digits = false;
    for (; i < s.size() && isDigit(s[i]); ++i, digits = true) {
      uint64_t d = static_cast<uint64_t>(s[i] - '0');
      if (whole > (kMaxNs - d) / 10) return std::nullopt;
      whole = whole * 10 + d;
    }
    if (i < s.size() && s[i] == '.') {
      for (++i; i < s.size() && isDigit(s[i]); ++i, digits = true) {
        // Digits past nanosecond precision of an hour change nothing; they are skipped.
        if (fracScale > kMaxNs / 10) continue;
        frac = frac * 10 + static_cast<uint64_t>(s[i] - '0');
        fracScale *= 10;
      }
    }
    if (!digits) return std::nullopt;
    size_t unitStart = i;
    while (i < s.size() && !isDigit(s[i]) && s[i] != '.') ++i;
    auto unit = unitNs(s.substr(unitStart, i - unitStart));
    if (!unit || whole > kMaxNs / *unit) return std::nullopt;
    uint64_t value = whole * *unit;
    // frac / fracScale < 1, so this part is below one unit: no overflow on its own.
    value +=
        static_cast<uint64_t>(static_cast<long double>(frac) * static_cast<long double>(*unit) /
                              static_cast<long double>(fracScale));
    if (value > kMaxNs || total > kMaxNs - value) return std::nullopt;
    total += value;
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(total));
}

std::string formatDuration(std::chrono::nanoseconds d) {
  auto ns = d.count();
  if (ns == 0) return "0s";
  if (ns % 3'600'000'000'000 == 0) return std::to_string(ns / 3'600'000'000'000) + "h";
  if (ns % 60'000'000'000 == 0) return std::to_string(ns / 60'000'000'000) + "m";
  if (ns % 1'000'000'000 == 0) return std::to_string(ns / 1'000'000'000) + "s";
  if (ns % 1'000'000 == 0) return std::to_string(ns / 1'000'000) + "ms";
  return std::to_string(ns) + "ns";
}

}  // namespace sliceproxy::proxier
