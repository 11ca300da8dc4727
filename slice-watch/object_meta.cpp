#include "slice-watch/object_meta.h"

#include "slice-watch/rfc3339.h"

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

// Where the EndpointSlice controller records when the change a slice carries started; kube-proxy
// measures network programming latency from it.
constexpr std::string_view kAnnotationLastChangeTriggerTime =
    "endpoints.kubernetes.io/last-change-trigger-time";

void decodeAnnotations(Reader& r, od::value& v, ObjectMeta& meta) {
  r.forEachField(v, [&](Field& f) {
    if (!f.is(kAnnotationLastChangeTriggerTime)) return;
    // Like kube-proxy, a value that does not parse only costs the measurement, not the object.
    if (auto text = r.optString(f.value)) meta.lastChangeTriggerTime = parseRfc3339(*text);
  });
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
    } else if (f.is("annotations")) {
      decodeAnnotations(r, f.value, meta);
    } else if (f.is("creationTimestamp")) {
      if (auto text = r.optString(f.value)) meta.creationTimestamp = parseRfc3339(*text);
    } else if (f.is("deletionTimestamp")) {
      meta.deletionTimestampSet = !r.isNull(f.value);
    }
  });
}

}  // namespace sliceproxy::slicewatch::detail
