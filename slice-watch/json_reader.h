#pragma once
// Internal to the decoders: typed reads from simdjson on-demand values. Every surprise becomes a
// FieldError that names the exact field path, so one bad field costs one object and one clear
// message, never the document. The path is kept as a stack of string literals and indexes and
// only turned into text when something is wrong, so the happy path allocates nothing for it.

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxier/model/ip.h"
#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch::detail {

namespace od = simdjson::ondemand;

// Valid JSON that is not a valid object. Malformed JSON is a simdjson::simdjson_error instead,
// because after it the iterator cannot be trusted and the whole document stops.
struct FieldError {
  std::string field;
  std::string_view reason;
  std::string message;
};

class FieldPath {
 public:
  void push(std::string_view name) { segs_.push_back({name, -1}); }
  void push(size_t index) { segs_.push_back({{}, static_cast<int64_t>(index)}); }
  void pop() { segs_.pop_back(); }
  void truncate(size_t depth) { segs_.resize(depth); }
  std::string str() const;

 private:
  struct Seg {
    std::string_view name;  // a literal, or a key that lives as long as the parsed document
    int64_t index;          // >= 0: an array element
  };
  std::vector<Seg> segs_;
};

// Unwraps an iteration step; a failure there is malformed JSON, which ends the document.
template <class T>
T take(simdjson::simdjson_result<T>&& result) {
  T out;
  auto err = std::move(result).get(out);
  if (err != simdjson::SUCCESS) throw simdjson::simdjson_error(err);
  return out;
}

// Throws on any error other than success: a failed step leaves the on-demand iterator unusable.
inline void check(simdjson::error_code e) {
  if (e != simdjson::SUCCESS) throw simdjson::simdjson_error(e);
}

// A string field; null and other types count as unset.
std::string optString(od::value& v);

// For messages: the text in quotes, cut short so a hostile input cannot flood the log.
std::string inQuotes(std::string_view text);

class Reader;

// One field of an object being iterated. is() both tests the key and, on a match, makes the key
// the current path segment for the reads that follow.
class Field {
 public:
  Field(Reader& r, od::raw_json_string key, od::value& value) : value(value), r_(r), key_(key) {}
  bool is(std::string_view name);
  bool matched() const { return matched_; }
  od::value& value;

 private:
  Reader& r_;
  od::raw_json_string key_;
  bool matched_ = false;
};

class Reader {
 public:
  FieldPath path;

  [[noreturn]] void fail(std::string_view reason, std::string message) const;
  [[noreturn]] void failAt(std::string field, std::string_view reason, std::string message) const;
  [[noreturn]] void wrongType(od::value& v, const char* expected) const;

  bool isNull(od::value& v) { return v.type() == od::json_type::null; }
  std::string_view string(od::value& v);
  std::optional<std::string_view> optString(od::value& v);  // null: nullopt
  std::optional<bool> optBool(od::value& v);                // null: nullopt
  // An integer in [lo, hi]; anything else fails with rangeReason.
  int64_t integer(od::value& v, int64_t lo, int64_t hi, std::string_view rangeReason);
  uint16_t port(od::value& v, int64_t lo) {
    return static_cast<uint16_t>(integer(v, lo, 65535, reason::kPortOutOfRange));
  }
  proxier::IpAddr ip(od::value& v) { return ipFrom(string(v)); }
  // For text already read: a JSON string may be unescaped only once.
  proxier::IpAddr ipFrom(std::string_view text) const;
  proxier::Cidr cidr(od::value& v);

  // nullopt for null (Go decodes null into an empty value, and so do we).
  std::optional<od::object> object(od::value& v);
  std::optional<od::array> array(od::value& v);

  // Calls onField(Field&) for every field; unknown fields are the caller's to ignore.
  template <class F>
  void forEachField(od::value& v, F&& onField) {
    auto obj = object(v);
    if (!obj) return;
    for (auto result : *obj) {
      od::field fld = take(std::move(result));
      Field f(*this, fld.key(), fld.value());
      onField(f);
      if (f.matched()) path.pop();
    }
  }

  // Calls onElement(size_t index, od::value&) for every element; returns the element count.
  template <class F>
  size_t forEachElement(od::value& v, F&& onElement) {
    return forEachElement(v, Limit{}, std::forward<F>(onElement));
  }

  // An API limit on an array's length, checked while iterating (no extra pass to count).
  struct Limit {
    size_t max = SIZE_MAX;
    std::string_view reason;
    std::string_view what;  // "endpoints in one slice"
  };

  template <class F>
  size_t forEachElement(od::value& v, const Limit& limit, F&& onElement) {
    auto arr = array(v);
    if (!arr) return 0;
    size_t i = 0;
    for (auto result : *arr) {
      if (i == limit.max) {
        fail(limit.reason,
             "more than " + std::to_string(limit.max) + " " + std::string(limit.what));
      }
      od::value elem = take(std::move(result));
      path.push(i);
      onElement(i, elem);
      path.pop();
      ++i;
    }
    return i;
  }
};

inline bool Field::is(std::string_view name) {
  if (matched_ || key_ != name) return false;
  matched_ = true;
  r_.path.push(name);
  return true;
}

}  // namespace sliceproxy::slicewatch::detail
