#include "slice-watch/rfc3339.h"

namespace sliceproxy::slicewatch {

namespace {

// Reads exactly n digits at text[pos].
std::optional<int> digits(std::string_view text, size_t pos, size_t n) {
  if (pos + n > text.size()) return std::nullopt;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parseRfc3339(std::string_view text) {
  using namespace std::chrono;
  // YYYY-MM-DDTHH:MM:SS is 19 characters, then an optional fraction, then Z or +hh:mm / -hh:mm.
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  auto y = digits(text, 0, 4), mo = digits(text, 5, 2), d = digits(text, 8, 2);
  auto h = digits(text, 11, 2), mi = digits(text, 14, 2), s = digits(text, 17, 2);
  if (!y || !mo || !d || !h || !mi || !s) return std::nullopt;
  const year_month_day date{year{*y}, month{static_cast<unsigned>(*mo)},
                            day{static_cast<unsigned>(*d)}};
  // 60 is a leap second, which Go's parser does not accept either.
  if (!date.ok() || *h > 23 || *mi > 59 || *s > 59) return std::nullopt;
  size_t pos = 19;
  nanoseconds frac{0};
  if (text[pos] == '.') {
    ++pos;
    int64_t scale = 100000000, ns = 0;
    const size_t first = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      ns += (text[pos] - '0') * scale;  // digits past nanoseconds add 0
      scale /= 10;
      ++pos;
    }
    if (pos == first) return std::nullopt;
    frac = nanoseconds{ns};
  }
  if (pos >= text.size()) return std::nullopt;
  minutes offset{0};
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    auto oh = digits(text, pos + 1, 2), om = digits(text, pos + 4, 2);
    if (!oh || !om || pos + 3 >= text.size() || text[pos + 3] != ':' || *oh > 23 || *om > 59) {
      return std::nullopt;
    }
    offset = hours{*oh} + minutes{*om};
    if (text[pos] == '-') offset = -offset;
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  // In seconds first: nanoseconds since 1970 in an int64 end in 2262, and years up to 9999 are
  // valid RFC 3339. Beyond that range the time saturates: an ExecCredential expiring in 2824
  // expires "never", not in 1678.
  const sys_seconds whole = sys_days{date} + hours{*h} + minutes{*mi} + seconds{*s} - offset;
  using Tp = system_clock::time_point;
  constexpr sys_seconds latest = floor<seconds>(Tp::max()) - seconds{1};
  constexpr sys_seconds earliest = floor<seconds>(Tp::min()) + seconds{1};
  if (whole > latest) return Tp::max();
  if (whole < earliest) return Tp::min();
  return time_point_cast<system_clock::duration>(whole) +
         duration_cast<system_clock::duration>(frac);
}

}  // namespace sliceproxy::slicewatch
