#include "slice-watch/list_page.h"

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

bool isMalformed(const DecodeResult& r) {
  auto* rej = std::get_if<proxier::Rejection>(&r);
  return rej && rej->reason == reason::kMalformedJson;
}

}  // namespace

ListPage decodeListPage(std::string& body, std::string_view kind, const DecodeOptions& opts) {
  ListPage page;
  const size_t size = body.size();
  body.reserve(size + simdjson::SIMDJSON_PADDING);
  // A parser of its own: its buffers grow to the page's size (a page of big slices is tens of
  // megabytes) and are better returned than kept for the next relist, hours away.
  od::parser parser;
  try {
    od::document doc =
        take(parser.iterate(simdjson::padded_string_view(body.data(), size, body.capacity())));
    od::object root = take(doc.get_object());
    for (auto result : root) {
      od::field fld = take(std::move(result));
      std::string_view key = take(fld.unescaped_key());
      od::value& val = fld.value();
      if (key == "kind") {
        std::string k = optString(val);
        if (!k.empty() && !k.ends_with("List")) {
          page.error = fmt::format("expected a {}List, got kind {}", kind, k);
          return page;
        }
      } else if (key == "metadata") {
        od::object meta = take(val.get_object());
        for (auto m : meta) {
          od::field mf = take(std::move(m));
          std::string_view mk = take(mf.unescaped_key());
          if (mk == "resourceVersion") {
            page.resourceVersion = optString(mf.value());
          } else if (mk == "continue") {
            page.continueToken = optString(mf.value());
          }
        }
      } else if (key == "items") {
        if (val.is_null()) continue;
        od::array items = take(val.get_array());
        for (auto elem : items) {
          od::value item = take(std::move(elem));
          od::object obj = take(item.get_object());
          DecodeResult r = decodeObject(obj, kind, opts);
          if (isMalformed(r)) {
            page.error = std::get<proxier::Rejection>(r).message;
            return page;
          }
          page.items.push_back(std::move(r));
        }
      }
    }
  } catch (const simdjson::simdjson_error& e) {
    page.error = fmt::format("malformed JSON: {}", e.what());
    page.items.clear();
  }
  return page;
}

}  // namespace sliceproxy::slicewatch
