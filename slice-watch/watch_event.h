#pragma once
// One line of an API watch stream ({"type": ..., "object": ...}) decoded with simdjson
// on-demand. ADDED and MODIFIED carry the decoded object (or a Rejection: the object is bad, the
// stream is fine); DELETED carries only the key; BOOKMARK only a resourceVersion; ERROR the
// Status the server sent (410 Expired/Gone means "relist").

#include <optional>
#include <string>
#include <string_view>

#include "slice-watch/api_status.h"
#include "slice-watch/decoded_object.h"

namespace sliceproxy::slicewatch {

struct WatchEvent {
  enum class Type { Added, Modified, Deleted, Bookmark, Error };
  Type type = Type::Added;
  std::string resourceVersion;          // the object's metadata.resourceVersion, if any
  proxier::ObjectKey key;               // from the object's metadata (namespace defaulted)
  std::optional<DecodeResult> decoded;  // ADDED, MODIFIED
  ApiStatus status;                     // ERROR: the Status the server sent
};

// `line` is one event without its newline; it may be grown (simdjson needs padding), its
// content is left unchanged. `namespaced`: whether objects of `kind` live in a namespace.
// nullopt, with `error` set, when the line is not a watch event: the stream is broken.
std::optional<WatchEvent> decodeWatchEvent(std::string& line, std::string_view kind,
                                           bool namespaced, const DecodeOptions& opts,
                                           std::string& error);

}  // namespace sliceproxy::slicewatch
