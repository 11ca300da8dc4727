// The EndpointSlice trigger time (endpoints.kubernetes.io/last-change-trigger-time): RFC 3339
// parsing and decoding, the start of network programming latency.

#include <gtest/gtest.h>

#include "slice-watch/rfc3339.h"
#include "slice-watch/watch_event.h"

namespace sliceproxy::slicewatch {
namespace {

using std::chrono::system_clock;
using namespace std::chrono_literals;

int64_t unixNanos(system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

TEST(SlicewatchRfc3339, ParsesWhatTheApiWrites) {
  // date -u -d 2024-05-01T12:34:56Z +%s = 1714566896
  constexpr int64_t kBase = 1714566896LL * 1000000000LL;
  auto t = parseRfc3339("2024-05-01T12:34:56Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(unixNanos(*t), kBase);
  t = parseRfc3339("2024-05-01T12:34:56.123456789Z");  // RFC3339Nano
  ASSERT_TRUE(t);
  EXPECT_EQ(unixNanos(*t), kBase + 123456789);
  t = parseRfc3339("2024-05-01T12:34:56.5Z");  // Go trims trailing zeros
  ASSERT_TRUE(t);
  EXPECT_EQ(unixNanos(*t), kBase + 500000000);
  t = parseRfc3339("2024-05-01T14:34:56.000001+02:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(unixNanos(*t), kBase + 1000);
  t = parseRfc3339("2024-05-01T07:04:56-05:30");
  ASSERT_TRUE(t);
  EXPECT_EQ(unixNanos(*t), kBase);
  t = parseRfc3339("2024-02-29T00:00:00Z");  // leap year
  ASSERT_TRUE(t);
  EXPECT_EQ(unixNanos(*t), 1709164800LL * 1000000000LL);
}

TEST(SlicewatchRfc3339, RejectsEverythingElse) {
  for (const char* bad : {"", "2024-05-01", "2024-05-01T12:34:56", "2024-05-01 12:34:56Z",
                          "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-05-01T24:00:00Z",
                          "2024-05-01T12:60:00Z", "2024-05-01T12:34:60Z", "2024-05-01T12:34:56.Z",
                          "2024-05-01T12:34:56+0200", "2024-05-01T12:34:56Zjunk",
                          "2024-05-01T12:34:56+02:00x", "yesterday", "2024-5-01T12:34:56Z"}) {
    EXPECT_FALSE(parseRfc3339(bad)) << bad;
  }
}

std::string sliceEvent(const std::string& annotations) {
  return R"({"type":"MODIFIED","object":{"metadata":{"name":"a","namespace":"ns",)"
         R"("resourceVersion":"7","labels":{"kubernetes.io/service-name":"svc"},)"
         R"("annotations":)" +
         annotations +
         R"(},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],)"
         R"("ports":[{"port":8080}]}})";
}

proxier::SlicePtr decodeSlice(std::string line) {
  std::string err;
  auto ev = decodeWatchEvent(line, "EndpointSlice", true, DecodeOptions{"test"}, err);
  EXPECT_TRUE(ev) << err;
  if (!ev || !ev->decoded) return nullptr;
  auto* obj = std::get_if<DecodedObject>(&*ev->decoded);
  EXPECT_TRUE(obj);
  return obj ? std::get<proxier::SlicePtr>(obj->object) : nullptr;
}

TEST(SlicewatchTriggerTime, DecodedFromTheAnnotation) {
  auto s = decodeSlice(sliceEvent(
      R"({"other":"x","endpoints.kubernetes.io/last-change-trigger-time":"2024-05-01T12:34:56.25Z"})"));
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->triggerTime);
  EXPECT_EQ(unixNanos(*s->triggerTime), 1714566896LL * 1000000000LL + 250000000);
}

TEST(SlicewatchTriggerTime, AbsentOrUnparsableCostsOnlyTheMeasurement) {
  for (const char* annotations :
       {R"({})", R"(null)", R"({"endpoints.kubernetes.io/last-change-trigger-time":"soon"})"}) {
    auto s = decodeSlice(sliceEvent(annotations));
    ASSERT_TRUE(s) << annotations;
    EXPECT_FALSE(s->triggerTime) << annotations;
    EXPECT_EQ(s->endpoints.size(), 1u) << annotations;
  }
}

}  // namespace
}  // namespace sliceproxy::slicewatch
