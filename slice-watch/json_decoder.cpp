#include "slice-watch/json_decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <variant>

#include "slice-watch/endpoint_slice_decoder.h"
#include "slice-watch/json_reader.h"
#include "slice-watch/node_decoder.h"
#include "slice-watch/object_meta.h"
#include "slice-watch/reasons.h"
#include "slice-watch/service_decoder.h"

namespace sliceproxy::slicewatch {

namespace od = simdjson::ondemand;
using detail::Field;
using detail::FieldError;
using detail::inQuotes;
using detail::Reader;
using detail::take;

namespace {

// metadata.name and metadata.namespace as the API server accepts them, by its loosest rule (a
// DNS-1123 subdomain; Services and namespaces must even be labels). A manifest could otherwise
// name an object with control characters or quotes, which end up in log lines, metric labels
// and the comments of kernel objects.
std::optional<std::string> badName(std::string_view n) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (n.size() > 253) return std::string("is longer than 253 characters");
  for (char c : n) {
    if (!alnum(c) && c != '-' && c != '.') {
      return fmt::format("\"{}\" is not a valid name (lowercase letters, digits, '-' and '.')", n);
    }
  }
  if (!alnum(n.front()) || !alnum(n.back())) {
    return fmt::format("\"{}\" must start and end with a lowercase letter or digit", n);
  }
  return std::nullopt;
}

using KindDecoder = std::variant<std::monostate, detail::ServiceDecoder,
                                 detail::EndpointSliceDecoder, detail::NodeDecoder>;

struct KindSource {
  std::string kind;
  bool fromObject = false;  // read from the object itself: skip its "kind" field later
  std::optional<FieldError> error;
};

void check(simdjson::error_code e) {
  if (e != simdjson::SUCCESS) throw simdjson::simdjson_error(e);
}

// Leaves obj rewound: JSON has no field order, and kind decides how everything else is read.
KindSource lookupKind(od::object& obj) {
  KindSource src;
  src.fromObject = true;
  od::value v;
  auto err = obj.find_field_unordered("kind").get(v);
  if (err == simdjson::NO_SUCH_FIELD) {
    src.error = FieldError{"kind", reason::kMissingField, "kind is required"};
  } else {
    check(err);
    Reader r;
    r.path.push("kind");
    try {
      src.kind = r.string(v);
    } catch (FieldError& e) {
      src.error = std::move(e);
    }
  }
  check(obj.reset().error());
  return src;
}

FieldError unknownKind(std::string_view kind) {
  return FieldError{
      "kind", reason::kUnknownKind,
      fmt::format("unknown kind {}; expected Service, EndpointSlice or Node", inQuotes(kind))};
}

DecodeResult decodeOne(od::object& obj, KindSource src, const DecodeOptions& opts) {
  Reader r;
  std::optional<FieldError> error = std::move(src.error);
  KindDecoder dec;
  if (!error) {
    if (src.kind == kKindService) {
      dec.emplace<detail::ServiceDecoder>(r);
    } else if (src.kind == kKindEndpointSlice) {
      dec.emplace<detail::EndpointSliceDecoder>(r);
    } else if (src.kind == kKindNode) {
      dec.emplace<detail::NodeDecoder>(r);
    } else {
      error = unknownKind(src.kind);
    }
  }

  detail::ObjectMeta meta;
  for (auto result : obj) {
    od::field fld = take(std::move(result));
    od::raw_json_string key = fld.key();
    od::value& val = fld.value();
    try {
      // After the first problem only metadata is read, so the rejection can name the object.
      if (key == "metadata") {
        r.path.push("metadata");
        detail::decodeObjectMeta(r, val, meta);
        r.path.pop();
      } else if (error) {
        continue;
      } else if (key == "kind") {
        if (src.fromObject) continue;
        r.path.push("kind");
        std::string_view k = r.string(val);
        if (k != src.kind) {
          r.fail(reason::kUnknownKind,
                 fmt::format("kind {} where {} was expected", inQuotes(k), src.kind));
        }
        r.path.pop();
      } else {
        Field f(r, key, val);
        std::visit(
            [&](auto& d) {
              if constexpr (!std::is_same_v<std::decay_t<decltype(d)>, std::monostate>) {
                d.field(f);
              }
            },
            dec);
        if (f.matched()) r.path.pop();
      }
    } catch (FieldError& e) {
      r.path.truncate(0);
      if (!error) error = std::move(e);
    }
  }

  bool known = src.kind == kKindService || src.kind == kKindEndpointSlice || src.kind == kKindNode;
  bool namespaced = known ? src.kind != kKindNode : !meta.ns.empty();
  if (known && namespaced && meta.ns.empty()) meta.ns = "default";
  proxier::ObjectKey key{namespaced ? meta.ns : std::string(), meta.name};
  if (!error && meta.name.empty()) {
    error = FieldError{"metadata.name", reason::kMissingField, "metadata.name is required"};
  }
  if (!error) {
    if (auto why = badName(meta.name)) {
      error = FieldError{"metadata.name", reason::kInvalidValue, *why};
    } else if (namespaced && (why = badName(meta.ns))) {
      error = FieldError{"metadata.namespace", reason::kInvalidValue, *why};
    }
  }
  if (!error) {
    try {
      ObjectPtr ptr = std::visit(
          [&](auto& d) -> ObjectPtr {
            if constexpr (std::is_same_v<std::decay_t<decltype(d)>, std::monostate>) {
              return {};  // not reached: an unknown kind is already an error
            } else {
              return d.finish(std::move(meta));
            }
          },
          dec);
      return DecodedObject{std::move(src.kind), std::move(key), std::move(ptr)};
    } catch (FieldError& e) {
      error = std::move(e);
    }
  }
  return proxier::Rejection{opts.origin,
                            std::move(src.kind),
                            key.name.empty() ? std::string() : key.str(),
                            std::move(error->field),
                            std::string(error->reason),
                            std::move(error->message)};
}

proxier::Rejection malformed(const DecodeOptions& opts, std::string_view kind,
                             simdjson::error_code e, std::string_view where) {
  return proxier::Rejection{opts.origin,
                            std::string(kind),
                            "",
                            "",
                            std::string(reason::kMalformedJson),
                            fmt::format("malformed JSON{}: {}", where, simdjson::error_message(e))};
}

std::string lineOf(od::document& doc, const simdjson::padded_string& text) {
  const char* loc = nullptr;
  if (doc.current_location().get(loc) != simdjson::SUCCESS) return "";
  if (loc < text.data() || loc > text.data() + text.size()) return "";
  return fmt::format(" at line {}", 1 + std::count(text.data(), loc, '\n'));
}

bool isBlank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

void decodeList(od::object& root, const std::string& listKind, const DecodeOptions& opts,
                std::vector<DecodeResult>& out) {
  // "List" items carry their own kind; items of a typed list ("ServiceList") usually do not.
  std::string itemKind = listKind.substr(0, listKind.size() - 4);
  for (auto result : root) {
    od::field fld = take(std::move(result));
    if (fld.key() != "items") continue;
    od::value& items = fld.value();
    od::json_type t = items.type();
    if (t == od::json_type::null) continue;
    if (t != od::json_type::array) {
      out.push_back(proxier::Rejection{opts.origin, listKind, "", "items",
                                       std::string(reason::kWrongType),
                                       "expected an array of objects"});
      continue;
    }
    size_t i = 0;
    for (auto elemResult : items.get_array()) {
      od::value item = take(std::move(elemResult));
      auto index = [n = i++] { return fmt::format("items[{}]", n); };
      if (item.type() != od::json_type::object) {
        out.push_back(proxier::Rejection{opts.origin, "", "", index(),
                                         std::string(reason::kWrongType),
                                         "a list item must be an object"});
        continue;
      }
      od::object obj = item.get_object();
      KindSource src = itemKind.empty() ? lookupKind(obj) : KindSource{itemKind, false, {}};
      DecodeResult r = decodeOne(obj, std::move(src), opts);
      if (auto* rej = std::get_if<proxier::Rejection>(&r); rej && rej->object.empty()) {
        rej->field = rej->field.empty() ? index() : index() + "." + rej->field;
      }
      out.push_back(std::move(r));
    }
  }
}

}  // namespace

DecodeResult decodeObject(od::object obj, std::string_view kindHint, const DecodeOptions& opts) {
  try {
    KindSource src =
        kindHint.empty() ? lookupKind(obj) : KindSource{std::string(kindHint), false, {}};
    return decodeOne(obj, std::move(src), opts);
  } catch (simdjson::simdjson_error& e) {
    return malformed(opts, kindHint, e.error(), "");
  }
}

std::vector<DecodeResult> decodeJsonDocument(std::string_view text, const DecodeOptions& opts) {
  std::vector<DecodeResult> out;
  if (isBlank(text)) return out;
  simdjson::padded_string padded(text);
  // A parser keeps its buffers between documents; one per thread keeps this thread-safe.
  thread_local od::parser parser;
  od::document doc;
  bool started = false;  // a document that failed to start has no location to ask for
  try {
    check(parser.iterate(padded).get(doc));
    started = true;
    od::json_type t = doc.type();
    if (t != od::json_type::object) {
      out.push_back(proxier::Rejection{opts.origin, "", "", "", std::string(reason::kWrongType),
                                       "a manifest must be a JSON object"});
      return out;
    }
    od::object root = doc.get_object();
    // on-demand reads lazily and would never look past the root; text after it (a stray brace,
    // a second document) means the file is not what its author thinks it is.
    std::string_view span = root.raw_json();
    size_t end = std::min(text.size(), size_t(span.data() + span.size() - padded.data()));
    if (!isBlank(text.substr(end))) {
      out.push_back(proxier::Rejection{
          opts.origin, "", "", "", std::string(reason::kMalformedJson),
          fmt::format("malformed JSON at line {}: unexpected text after the end of the document",
                      1 + std::count(text.begin(), text.begin() + end, '\n'))});
      return out;
    }
    check(root.reset().error());
    KindSource src = lookupKind(root);
    if (!src.error && src.kind.ends_with("List")) {
      decodeList(root, src.kind, opts, out);
    } else {
      out.push_back(decodeOne(root, std::move(src), opts));
    }
  } catch (simdjson::simdjson_error& e) {
    out.push_back(malformed(opts, "", e.error(), started ? lineOf(doc, padded) : ""));
  }
  return out;
}

}  // namespace sliceproxy::slicewatch
