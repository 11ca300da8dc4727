#include "slice-watch/watch_stream.h"

#include <fmt/format.h>

namespace sliceproxy::slicewatch {

namespace {

bool isBlank(std::string_view s) {
  return s.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

bool WatchLineFramer::feed(std::string_view piece, const OnLine& onLine) {
  buf_.append(piece);
  size_t start = 0;
  for (size_t nl; (nl = buf_.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (nl - start > max_) break;
    line_.assign(buf_, start, nl - start);
    if (isBlank(line_)) continue;
    if (onLine(line_)) {
      buf_.clear();
      return true;
    }
  }
  buf_.erase(0, start);
  // Checked after the complete lines went out: only a line still without its end is too long.
  size_t open = buf_.find('\n');
  if ((open == std::string::npos ? buf_.size() : open) > max_) {
    size_t size = buf_.size();
    buf_.clear();
    throw WatchLineTooLong(fmt::format(
        "a watch event is longer than {} bytes ({} bytes without a line end); the stream is "
        "broken",
        max_, size));
  }
  return false;
}

bool WatchLineFramer::finish(const OnLine& onLine) {
  if (buf_.size() > max_) {
    throw WatchLineTooLong(
        fmt::format("a watch event is longer than {} bytes; the stream is broken", max_));
  }
  std::swap(line_, buf_);
  buf_.clear();
  if (isBlank(line_)) return false;
  return onLine(line_);
}

}  // namespace sliceproxy::slicewatch
