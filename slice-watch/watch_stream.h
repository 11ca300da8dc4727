#pragma once
// The framing of an API watch stream: one JSON event per line, the body arriving in pieces that
// cut lines anywhere. Kept apart from the reflector so the framing can be fuzzed on its own.

#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sliceproxy::slicewatch {

// etcd refuses objects over 1.5 MiB (its default request limit), so no event line of a real API
// server comes near this; a server that sends more without a newline is broken, and buffering it
// would let it take the daemon's memory.
inline constexpr size_t kMaxWatchLineBytes = 16u << 20;

class WatchLineFramer {
 public:
  // Called with each complete, non-blank line (without its newline); the string may be grown
  // by the callee (simdjson padding). Returning true stops the framing (the caller relists).
  using OnLine = std::function<bool(std::string& line)>;

  explicit WatchLineFramer(size_t maxLineBytes = kMaxWatchLineBytes) : max_(maxLineBytes) {}

  // Frames one more piece of the body. true: a callback asked to stop. Throws WatchLineTooLong
  // when a line exceeds the limit.
  bool feed(std::string_view piece, const OnLine& onLine);
  // The body ended: a last line without its newline still counts.
  bool finish(const OnLine& onLine);

 private:
  size_t max_;
  std::string buf_;
  std::string line_;
};

class WatchLineTooLong : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace sliceproxy::slicewatch
