#include "slice-watch/yaml_to_json.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>

namespace sliceproxy::slicewatch {

namespace {

constexpr int kMaxDepth = 100;  // manifests are shallow; this stops alias loops and stack abuse

void appendString(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

bool isNullWord(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

size_t countDigits(std::string_view s, size_t from) {
  size_t i = from;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return i - from;
}

// Appends the JSON number for a YAML 1.2 core-schema integer, or returns false.
bool appendInteger(std::string& out, std::string_view s) {
  size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  size_t digits = countDigits(s, sign);
  if (digits > 0 && sign + digits == s.size()) {
    // JSON forbids '+' and leading zeros; the digits themselves are kept so that a number too
    // large for any integer type still reaches the decoder, which reports it as out of range.
    if (s[0] == '-') out += '-';
    size_t i = sign;
    while (i + 1 < s.size() && s[i] == '0') ++i;
    out.append(s.substr(i));
    return true;
  }
  int base = s.starts_with("0o") ? 8 : s.starts_with("0x") ? 16 : 0;
  if (base == 0 || s.size() == 2) return false;
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data() + 2, s.data() + s.size(), n, base);
  if (ec != std::errc() || end != s.data() + s.size()) return false;
  out += std::to_string(n);
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool isFloat(std::string_view s) {
  size_t i = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  size_t intDigits = countDigits(s, i);
  i += intDigits;
  size_t fracDigits = 0;
  if (i < s.size() && s[i] == '.') {
    fracDigits = countDigits(s, i + 1);
    i += 1 + fracDigits;
  }
  if (intDigits == 0 && fracDigits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t expDigits = countDigits(s, i);
    if (expDigits == 0) return false;
    i += expDigits;
  }
  return i == s.size();
}

bool appendFloat(std::string& out, std::string_view s) {
  if (!isFloat(s)) return false;
  double d = 0;
  const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
  auto [end, ec] = std::from_chars(begin, s.data() + s.size(), d);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(d)) return false;
  // {} prints the shortest text that reads back as d: valid JSON for any finite value. It prints
  // 80.0 as "80", which would turn a YAML float into an integer, so the fraction is put back.
  std::string num = fmt::format("{}", d);
  if (num.find_first_of(".eE") == std::string::npos) num += ".0";
  out += num;
  return true;
}

// A plain scalar's type comes from its text; tag "!" marks a quoted one, which is always a string.
void appendScalar(std::string& out, const YAML::Node& n) {
  const std::string& tag = n.Tag();
  const std::string& v = n.Scalar();
  static const std::string kCore = "tag:yaml.org,2002:";
  bool plain = tag == "?";
  bool core = tag.rfind(kCore, 0) == 0;
  std::string_view coreType = core ? std::string_view(tag).substr(kCore.size()) : "";
  if (coreType == "str" || (!plain && !core)) {
    appendString(out, v);
    return;
  }
  if ((plain || coreType == "null") && isNullWord(v)) {
    out += "null";
  } else if ((plain || coreType == "bool") && (v == "true" || v == "True" || v == "TRUE")) {
    out += "true";
  } else if ((plain || coreType == "bool") && (v == "false" || v == "False" || v == "FALSE")) {
    out += "false";
  } else if ((plain || coreType == "int") && appendInteger(out, v)) {
  } else if ((plain || coreType == "float") && appendFloat(out, v)) {
  } else {
    appendString(out, v);
  }
}

void append(std::string& out, const YAML::Node& n, int depth) {
  if (depth > kMaxDepth) {
    throw YamlError(n.Mark().line + 1, n.Mark().column + 1, "nested too deeply");
  }
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out += "null";
      return;
    case YAML::NodeType::Scalar:
      appendScalar(out, n);
      return;
    case YAML::NodeType::Sequence: {
      out += '[';
      bool first = true;
      for (const auto& item : n) {
        if (!first) out += ',';
        first = false;
        append(out, item, depth + 1);
      }
      out += ']';
      return;
    }
    case YAML::NodeType::Map: {
      out += '{';
      bool first = true;
      for (const auto& kv : n) {
        if (!kv.first.IsScalar() && !kv.first.IsNull()) {
          throw YamlError(kv.first.Mark().line + 1, kv.first.Mark().column + 1,
                          "a mapping key must be a scalar");
        }
        if (!first) out += ',';
        first = false;
        appendString(out, kv.first.IsScalar() ? kv.first.Scalar() : "");
        out += ':';
        append(out, kv.second, depth + 1);
      }
      out += '}';
      return;
    }
  }
}

}  // namespace

std::vector<YamlDocument> yamlToJson(std::string_view text) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    throw YamlError(e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  std::vector<YamlDocument> out;
  for (const auto& doc : docs) {
    if (doc.IsNull()) continue;  // an empty document, e.g. after a trailing ---
    YamlDocument d;
    d.line = doc.Mark().line + 1;
    append(d.json, doc, 0);
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace sliceproxy::slicewatch
