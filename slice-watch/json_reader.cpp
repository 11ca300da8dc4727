#include "slice-watch/json_reader.h"

#include <fmt/format.h>

#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch::detail {

namespace {

const char* typeName(od::json_type t) {
  switch (t) {
    case od::json_type::array:
      return "an array";
    case od::json_type::object:
      return "an object";
    case od::json_type::number:
      return "a number";
    case od::json_type::string:
      return "a string";
    case od::json_type::boolean:
      return "a boolean";
    case od::json_type::null:
      return "null";
  }
  return "something else";
}

std::string_view trimRight(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

std::string FieldPath::str() const {
  std::string out;
  for (const auto& s : segs_) {
    if (s.index >= 0) {
      out += '[';
      out += std::to_string(s.index);
      out += ']';
    } else {
      if (!out.empty()) out += '.';
      out += s.name;
    }
  }
  return out;
}

std::string optString(od::value& v) {
  std::string_view s;
  auto err = v.get_string().get(s);
  if (err == simdjson::INCORRECT_TYPE) return "";
  check(err);
  return std::string(s);
}

std::string inQuotes(std::string_view text) {
  constexpr size_t kMax = 80;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    out += c < 0x20 ? '?' : static_cast<char>(c);
  }
  if (text.size() > kMax) out += "...";
  out += '"';
  return out;
}

void Reader::fail(std::string_view reason, std::string message) const {
  throw FieldError{path.str(), reason, std::move(message)};
}

void Reader::failAt(std::string field, std::string_view reason, std::string message) const {
  throw FieldError{std::move(field), reason, std::move(message)};
}

void Reader::wrongType(od::value& v, const char* expected) const {
  od::json_type t = v.type();
  std::string got = typeName(t);
  if (t == od::json_type::string) {
    // Safe to unescape here: the value is never read again.
    got += ' ' + inQuotes(std::string_view(v.get_string()));
  } else if (t == od::json_type::number || t == od::json_type::boolean) {
    got += ' ';
    got += trimRight(v.raw_json_token()).substr(0, 40);
  }
  fail(reason::kWrongType, fmt::format("expected {}, got {}", expected, got));
}

std::string_view Reader::string(od::value& v) {
  if (v.type() != od::json_type::string) wrongType(v, "a string");
  return v.get_string();
}

std::optional<std::string_view> Reader::optString(od::value& v) {
  if (isNull(v)) return std::nullopt;
  return string(v);
}

std::optional<bool> Reader::optBool(od::value& v) {
  od::json_type t = v.type();
  if (t == od::json_type::null) return std::nullopt;
  if (t != od::json_type::boolean) wrongType(v, "a boolean");
  return bool(v.get_bool());
}

int64_t Reader::integer(od::value& v, int64_t lo, int64_t hi, std::string_view rangeReason) {
  if (v.type() != od::json_type::number) wrongType(v, "an integer");
  std::string_view token = trimRight(v.raw_json_token());
  if (v.get_number_type() == od::number_type::floating_point_number) {
    fail(reason::kWrongType, fmt::format("expected an integer, got {}", token.substr(0, 40)));
  }
  int64_t n = 0;
  // An integer too large for int64 is out of any range we accept.
  if (v.get_int64().get(n) != simdjson::SUCCESS || n < lo || n > hi) {
    fail(rangeReason, fmt::format("{} is out of range {}..{}", token.substr(0, 40), lo, hi));
  }
  return n;
}

proxier::IpAddr Reader::ipFrom(std::string_view text) const {
  auto ip = proxier::IpAddr::parse(text);
  if (!ip) fail(reason::kInvalidIp, inQuotes(text) + " is not a valid IP address");
  return *ip;
}

proxier::Cidr Reader::cidr(od::value& v) {
  std::string_view text = string(v);
  auto c = proxier::Cidr::parse(text);
  if (!c) fail(reason::kInvalidCidr, inQuotes(text) + " is not a valid CIDR");
  return *c;
}

std::optional<od::object> Reader::object(od::value& v) {
  od::json_type t = v.type();
  if (t == od::json_type::null) return std::nullopt;
  if (t != od::json_type::object) wrongType(v, "an object");
  return od::object(v.get_object());
}

std::optional<od::array> Reader::array(od::value& v) {
  od::json_type t = v.type();
  if (t == od::json_type::null) return std::nullopt;
  if (t != od::json_type::array) wrongType(v, "an array");
  return od::array(v.get_array());
}

}  // namespace sliceproxy::slicewatch::detail
