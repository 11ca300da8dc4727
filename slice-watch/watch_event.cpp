#include "slice-watch/watch_event.h"

#include <fmt/format.h>
#include <simdjson.h>

#include "slice-watch/json_decoder.h"
#include "slice-watch/json_reader.h"
#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch {

namespace od = simdjson::ondemand;
using detail::check;
using detail::optString;
using detail::take;

namespace {

std::optional<WatchEvent::Type> parseType(std::string_view t) {
  if (t == "ADDED") return WatchEvent::Type::Added;
  if (t == "MODIFIED") return WatchEvent::Type::Modified;
  if (t == "DELETED") return WatchEvent::Type::Deleted;
  if (t == "BOOKMARK") return WatchEvent::Type::Bookmark;
  if (t == "ERROR") return WatchEvent::Type::Error;
  return std::nullopt;
}

// metadata.{name,namespace,resourceVersion}, read without judging the rest of the object.
void readMeta(od::object& obj, WatchEvent& ev, bool namespaced) {
  od::value meta;
  auto err = obj.find_field_unordered("metadata").get(meta);
  if (err == simdjson::NO_SUCH_FIELD) return;
  check(err);
  od::object m;
  err = meta.get_object().get(m);
  if (err == simdjson::INCORRECT_TYPE) return;
  check(err);
  for (auto result : m) {
    od::field f = take(std::move(result));
    std::string_view k = take(f.unescaped_key());
    if (k == "name") {
      ev.key.name = optString(f.value());
    } else if (k == "namespace") {
      ev.key.ns = optString(f.value());
    } else if (k == "resourceVersion") {
      ev.resourceVersion = optString(f.value());
    }
  }
  if (!namespaced) {
    ev.key.ns.clear();
  } else if (ev.key.ns.empty()) {
    ev.key.ns = "default";
  }
}

void readStatus(od::object& obj, ApiStatus& status) {
  for (auto result : obj) {
    od::field f = take(std::move(result));
    std::string_view k = take(f.unescaped_key());
    if (k == "code") {
      int64_t c = 0;
      if (f.value().get_int64().get(c) == simdjson::SUCCESS) status.code = static_cast<int>(c);
    } else if (k == "reason") {
      status.reason = optString(f.value());
    } else if (k == "message") {
      status.message = optString(f.value());
    } else if (k == "details") {
      od::object details;
      if (f.value().get_object().get(details) != simdjson::SUCCESS) continue;
      od::array causes;
      if (details.find_field_unordered("causes").get_array().get(causes) != simdjson::SUCCESS) {
        continue;
      }
      for (auto cause : causes) {
        od::object c;
        std::string_view reason;
        if (cause.get_object().get(c) == simdjson::SUCCESS &&
            c.find_field_unordered("reason").get_string().get(reason) == simdjson::SUCCESS) {
          status.causes.emplace_back(reason);
        }
      }
    }
  }
}

}  // namespace

std::optional<WatchEvent> decodeWatchEvent(std::string& line, std::string_view kind,
                                           bool namespaced, const DecodeOptions& opts,
                                           std::string& error) {
  const size_t size = line.size();
  line.reserve(size + simdjson::SIMDJSON_PADDING);
  thread_local od::parser parser;
  WatchEvent ev;
  try {
    od::document doc =
        take(parser.iterate(simdjson::padded_string_view(line.data(), size, line.capacity())));
    od::object root;
    if (doc.get_object().get(root) != simdjson::SUCCESS) {
      error = "a watch event must be a JSON object";
      return std::nullopt;
    }
    od::value typeValue;
    if (root.find_field_unordered("type").get(typeValue) != simdjson::SUCCESS) {
      error = "watch event without a type";
      return std::nullopt;
    }
    std::string typeText = optString(typeValue);
    auto type = parseType(typeText);
    if (!type) {
      error = fmt::format("unknown watch event type \"{}\"", typeText.substr(0, 40));
      return std::nullopt;
    }
    ev.type = *type;
    od::value objValue;
    if (root.find_field_unordered("object").get(objValue) != simdjson::SUCCESS) {
      error = fmt::format("{} watch event without an object", typeText);
      return std::nullopt;
    }
    od::object obj = take(objValue.get_object());
    if (ev.type == WatchEvent::Type::Error) {
      readStatus(obj, ev.status);
      return ev;
    }
    readMeta(obj, ev, namespaced);
    if (ev.type == WatchEvent::Type::Added || ev.type == WatchEvent::Type::Modified) {
      check(obj.reset().error());
      DecodeResult r = decodeObject(obj, kind, opts);
      if (auto* rej = std::get_if<proxier::Rejection>(&r);
          rej && rej->reason == reason::kMalformedJson) {
        error = rej->message;
        return std::nullopt;
      }
      ev.decoded = std::move(r);
    }
  } catch (const simdjson::simdjson_error& e) {
    error = fmt::format("malformed JSON: {}", e.what());
    return std::nullopt;
  }
  return ev;
}

}  // namespace sliceproxy::slicewatch
