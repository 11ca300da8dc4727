#include "slice-watch/object_meta.h"

namespace sliceproxy::slicewatch::detail {

namespace {

void decodeLabels(Reader& r, od::value& v, proxier::Labels& labels) {
  auto obj = r.object(v);
  if (!obj) return;
  for (auto result : *obj) {
    od::field f = take(std::move(result));
    // The key stays valid in the parser's buffer until the next document, which outlives any
    // error built from this path.
    std::string_view key = f.unescaped_key();
    r.path.push(key);
    labels.set(std::string(key), std::string(r.optString(f.value()).value_or("")));
    r.path.pop();
  }
}

}  // namespace

void decodeObjectMeta(Reader& r, od::value& v, ObjectMeta& meta) {
  r.forEachField(v, [&](Field& f) {
    if (f.is("name")) {
      meta.name = r.optString(f.value).value_or("");
    } else if (f.is("namespace")) {
      meta.ns = r.optString(f.value).value_or("");
    } else if (f.is("resourceVersion")) {
      meta.resourceVersion = r.optString(f.value).value_or("");
    } else if (f.is("labels")) {
      decodeLabels(r, f.value, meta.labels);
    } else if (f.is("deletionTimestamp")) {
      meta.deletionTimestampSet = !r.isNull(f.value);
    }
  });
}

}  // namespace sliceproxy::slicewatch::detail
