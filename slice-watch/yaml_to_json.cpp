#include "slice-watch/yaml_to_json.h"

#include <fmt/format.h>
#include <yaml-cpp/anchor.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <charconv>
#include <cmath>
#include <optional>
#include <sstream>
#include <unordered_map>

namespace sliceproxy::slicewatch {

namespace {

constexpr size_t kMaxDepth = 100;  // manifests are shallow; this stops alias loops and stack abuse

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
void appendScalar(std::string& out, const std::string& tag, const std::string& v) {
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

// Builds JSON from the parser's events, never a node tree: memory follows the JSON written,
// which is bounded, and an alias is the text of its anchor copied (checked against the bound
// before it is copied), so a few hundred bytes of nested aliases cannot expand to gigabytes.
class JsonBuilder : public YAML::EventHandler {
 public:
  explicit JsonBuilder(size_t maxBytes) : maxBytes_(maxBytes) {}

  std::vector<YamlDocument> docs;

  // Where the last document started, and whether it held anything: yaml-cpp 0.7 can return a
  // document without consuming a token (a stray ',' in block context, upstream issue 1040),
  // and then returns the same empty document forever.
  YAML::Mark lastStart;
  bool lastEmpty = false;

  void OnDocumentStart(const YAML::Mark& mark) override {
    lastStart = mark;
    lastEmpty = true;
    out_.clear();
    line_ = 0;
    anchors_.clear();
    stack_.clear();
  }
  void OnDocumentEnd() override {
    if (out_.empty() || out_ == "null") return;  // an empty document, e.g. after a trailing ---
    lastEmpty = false;
    docs.push_back({std::move(out_), line_});
    out_.clear();
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    size_t at = beginNode(mark, true);
    if (isKey()) {
      writeKey("");
    } else {
      out_ += "null";
    }
    endNode(anchor, at, "?", std::string());
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw YamlError(mark.line + 1, mark.column + 1, "unknown alias");
    const Anchored& a = it->second;
    beginNode(mark, a.key.has_value());
    if (isKey()) {
      writeKey(*a.key);
    } else {
      if (out_.size() + a.json.size() > maxBytes_) tooLarge(mark);
      out_ += a.json;
    }
    afterValue();
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    size_t at = beginNode(mark, true);
    if (isKey()) {
      writeKey(value);
    } else {
      appendScalar(out_, tag, value);
    }
    endNode(anchor, at, tag, value);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    openContainer(mark, anchor, '[', false);
  }
  void OnSequenceEnd() override { closeContainer(']'); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    openContainer(mark, anchor, '{', true);
  }
  void OnMapEnd() override { closeContainer('}'); }

 private:
  struct Frame {
    bool map;
    size_t items = 0;  // in a map: keys and values both count, so even = a key comes next
    size_t start;
    YAML::anchor_t anchor;
  };
  struct Anchored {
    std::string json;
    std::optional<std::string> key;  // a scalar can be a mapping key; a container cannot
  };

  bool isKey() const {
    return !stack_.empty() && stack_.back().map && stack_.back().items % 2 == 0;
  }

  // Writes the separator before a node and checks it may stand where it is; returns where its
  // text starts.
  size_t beginNode(const YAML::Mark& mark, bool scalar) {
    if (line_ == 0) line_ = mark.line + 1;
    if (!stack_.empty()) {
      Frame& f = stack_.back();
      if (f.map && f.items % 2 == 0) {
        if (!scalar)
          throw YamlError(mark.line + 1, mark.column + 1, "a mapping key must be a scalar");
        if (f.items > 0) out_ += ',';
      } else if (!f.map && f.items > 0) {
        out_ += ',';
      }
    }
    if (out_.size() > maxBytes_) tooLarge(mark);
    return out_.size();
  }
  void writeKey(const std::string& key) {
    appendString(out_, key);
    out_ += ':';
  }
  void afterValue() {
    if (!stack_.empty()) ++stack_.back().items;
  }
  void endNode(YAML::anchor_t anchor, size_t at, const std::string& tag,
               const std::string& scalar) {
    if (anchor != YAML::NullAnchor) {
      // A key's text ends with ':'; as a value the same scalar is typed, so keep both forms.
      std::string json;
      if (isKey()) {
        appendScalar(json, tag, scalar);
      } else {
        json = out_.substr(at);
      }
      anchors_[anchor] = {std::move(json), scalar};
    }
    afterValue();
  }
  void openContainer(const YAML::Mark& mark, YAML::anchor_t anchor, char open, bool map) {
    size_t at = beginNode(mark, false);
    if (stack_.size() >= kMaxDepth) {
      throw YamlError(mark.line + 1, mark.column + 1, "nested too deeply");
    }
    out_ += open;
    stack_.push_back({map, 0, at, anchor});
  }
  void closeContainer(char close) {
    Frame f = stack_.back();
    stack_.pop_back();
    out_ += close;
    if (f.anchor != YAML::NullAnchor) anchors_[f.anchor] = {out_.substr(f.start), std::nullopt};
    afterValue();
  }
  [[noreturn]] void tooLarge(const YAML::Mark& mark) {
    throw YamlError(
        mark.line + 1, mark.column + 1,
        fmt::format("expands to more than {} bytes (aliases repeated too often?)", maxBytes_));
  }

  size_t maxBytes_;
  std::string out_;
  int line_ = 0;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, Anchored> anchors_;
};

}  // namespace

size_t yamlExpansionLimit(size_t textBytes) {
  return 8 * textBytes + (1u << 20);
}

std::vector<YamlDocument> yamlToJson(std::string_view text) {
  JsonBuilder builder(yamlExpansionLimit(text.size()));
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    std::optional<int> emptyAt;  // position of the previous document, if it was empty
    while (parser.HandleNextDocument(builder)) {
      if (!builder.lastEmpty) {
        emptyAt.reset();
        continue;
      }
      const YAML::Mark& m = builder.lastStart;
      if (emptyAt == m.pos) {
        // Two empty documents at one position: the parser did not move and never will.
        unsigned char c = m.pos >= 0 && static_cast<size_t>(m.pos) < text.size()
                              ? static_cast<unsigned char>(text[static_cast<size_t>(m.pos)])
                              : ' ';
        throw YamlError(m.line + 1, m.column + 1,
                        c > 0x20 && c < 0x7f ? fmt::format("unexpected '{}'", static_cast<char>(c))
                                             : std::string("unexpected character"));
      }
      emptyAt = m.pos;
    }
  } catch (const YAML::Exception& e) {
    throw YamlError(e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  return std::move(builder.docs);
}

}  // namespace sliceproxy::slicewatch
