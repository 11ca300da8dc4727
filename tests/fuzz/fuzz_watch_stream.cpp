// A watch response as it comes off the socket: the HTTP/1.1 response header and a chunked (or
// length-delimited, or EOF-delimited) body, parsed by Beast exactly as beast_transport.cpp sets
// it up (a buffer_body read in fixed pieces, no body limit), framed into lines by
// WatchLineFramer and decoded by decodeWatchEvent. The first byte picks the kind.
#include <boost/beast/http.hpp>
#include <string>

#include "slice-watch/watch_event.h"
#include "slice-watch/watch_stream.h"
#include "tests/fuzz/kind_byte.h"

namespace http = boost::beast::http;
using sliceproxy::slicewatch::WatchLineFramer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = sliceproxy::fuzz::splitKind(data, size);
  sliceproxy::slicewatch::DecodeOptions opts{"fuzz stream"};
  // Small enough that the fuzzer reaches the limit; the daemon's is kMaxWatchLineBytes.
  WatchLineFramer framer(4096);
  auto onLine = [&](std::string& line) {
    std::string error;
    auto ev = sliceproxy::slicewatch::decodeWatchEvent(line, in.kind, in.namespaced, opts, error);
    return !ev;  // a broken stream ends the watch, as in the reflector
  };

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  boost::beast::error_code ec;
  const char* p = in.rest.data();
  size_t left = in.rest.size();
  // Small pieces: chunk boundaries, line ends and read boundaries fall everywhere.
  char piece[64];
  try {
    while (!parser.is_done()) {
      parser.get().body().data = piece;
      parser.get().body().size = sizeof piece;
      size_t used = parser.put(boost::asio::buffer(p, left), ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::need_more && left == used) {
        ec = {};
        p += used, left -= used;
        parser.put_eof(ec);
        if (ec) return 0;
      } else if (ec) {
        return 0;
      } else {
        p += used, left -= used;
      }
      size_t got = sizeof piece - parser.get().body().size;
      if (parser.is_header_done() && got && framer.feed(std::string_view(piece, got), onLine)) {
        return 0;
      }
      if (used == 0 && got == 0 && !parser.is_done()) {
        if (left != 0) return 0;
        parser.put_eof(ec);
        if (ec) return 0;
        break;
      }
    }
    framer.finish(onLine);
  } catch (const sliceproxy::slicewatch::WatchLineTooLong&) {
  }
  return 0;
}
