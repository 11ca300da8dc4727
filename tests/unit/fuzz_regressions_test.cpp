// Regression tests for what the fuzz targets of tests/fuzz/ found (issue 18), each with the
// input that found it, and for the watch stream framing they exercise.
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "proxier/config/config.h"
#include "proxier/config/duration.h"
#include "proxier/config/kube_proxy_config.h"
#include "proxier/core/log_text.h"
#include "slice-watch/json_decoder.h"
#include "slice-watch/manifest_file.h"
#include "slice-watch/rfc3339.h"
#include "slice-watch/watch_stream.h"
#include "slice-watch/yaml_to_json.h"

namespace sliceproxy::testing {
namespace {

using proxier::formatDuration;
using proxier::parseDuration;
using namespace std::chrono_literals;

// fuzz_duration: the sum was a double cast to int64, so a duration past ~292 years became
// INT64_MIN ns, accepted and printed as a negative duration that does not parse back.
TEST(FuzzRegressionTest, DurationOverflowIsRefused) {
  // "33333330.5h0ns" is the input fuzz_duration found within seconds.
  for (const char* text :
       {"33333330.5h0ns", "99999999999999999999h", "2562048h", "9223372036.854775808s",
        "9223372036854775807ns1ns", "5124095576030431h"}) {
    EXPECT_EQ(parseDuration(text), std::nullopt) << text;
  }
  // The largest duration still parses, and prints as something that parses back to it.
  auto max = parseDuration("2562047h47m16.854775807s");
  ASSERT_TRUE(max);
  EXPECT_EQ(max->count(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(parseDuration(formatDuration(*max)), max);
}

// Found reading the duration parser for the fuzz target: "µs" never parsed, because the unit
// was read with isalpha, which is false for the bytes of U+00B5.
TEST(FuzzRegressionTest, DurationMicroSecondsInEverySpelling) {
  EXPECT_EQ(parseDuration("10us"), 10us);
  EXPECT_EQ(parseDuration("10\u00b5s"), 10us);
  EXPECT_EQ(parseDuration("10\u03bcs"), 10us);
  EXPECT_EQ(parseDuration("1.5h"), 90min);
  EXPECT_EQ(parseDuration(".5s"), 500ms);
  EXPECT_EQ(parseDuration("1h1m1s1ms1us1ns"), 1h + 1min + 1s + 1ms + 1us + 1ns);
  for (const char* text : {"", "s", "1", "1x", "-1s", "1e3s", ".s", "1..5s"}) {
    EXPECT_EQ(parseDuration(text), std::nullopt) << text;
  }
}

// fuzz_rfc3339: a valid timestamp after 2262 (the seed's year changed to 2824) overflowed the
// nanosecond count (UBSan: signed integer overflow), giving a time in the past: an exec
// credential expiring in 2824 would have been renewed on every request.
TEST(FuzzRegressionTest, Rfc3339OutsideTheClockRangeSaturates) {
  using Tp = std::chrono::system_clock::time_point;
  EXPECT_EQ(slicewatch::parseRfc3339("2824-05-01T12:34:56.123456789Z"), Tp::max());
  EXPECT_EQ(slicewatch::parseRfc3339("9999-12-31T23:59:59-23:59"), Tp::max());
  EXPECT_EQ(slicewatch::parseRfc3339("0000-01-01T00:00:00+23:59"), Tp::min());
  EXPECT_EQ(slicewatch::parseRfc3339("1677-01-01T00:00:00Z"), Tp::min());
  // Inside the range, to the nanosecond.
  auto late = slicewatch::parseRfc3339("2262-04-11T23:47:15.854775807Z");
  ASSERT_TRUE(late);
  EXPECT_EQ(late->time_since_epoch().count(), std::numeric_limits<int64_t>::max() - 1'000'000'000);
  auto early = slicewatch::parseRfc3339("1970-01-01T00:00:01.5+00:00");
  ASSERT_TRUE(early);
  EXPECT_EQ(early->time_since_epoch(), std::chrono::milliseconds(1500));
}

// fuzz_yaml_manifest: a stray ',' in block context made yaml-cpp 0.7 return the same empty
// document forever (upstream issue 1040): one file of the manifest directory hung the source
// thread. The minimized input the fuzzer found, then the smallest form.
TEST(FuzzRegressionTest, StrayCommaInBlockContextIsAnErrorNotAHang) {
  const std::string found =
      "# Servine `kind:\xff\xffist` (teoint, node-bas\n,    onel: TCP\n        port: 8443\n";
  for (const std::string& text : {found, std::string(",\n"), std::string("kind: List\n---\n,")}) {
    try {
      slicewatch::yamlToJson(text);
      ADD_FAILURE() << "no error for " << text;
    } catch (const slicewatch::YamlError& e) {
      EXPECT_EQ(std::string(e.what()), "unexpected ','") << text;
      EXPECT_GE(e.line, 1);
    }
    auto results = slicewatch::decodeManifest(text, slicewatch::ManifestFormat::Yaml,
                                              slicewatch::DecodeOptions{"stray.yaml"});
    ASSERT_EQ(results.size(), 1u);
    const auto* r = std::get_if<proxier::Rejection>(&results[0]);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->origin, "stray.yaml");
  }
  // Documents that are really empty are still fine.
  EXPECT_TRUE(slicewatch::yamlToJson("---\n---\n---\n").empty());
}

// fuzz_kube_proxy_config, after 293,400 executions (tests/fuzz/regressions/kube_proxy_config/
// mode-iptables-round-trip): --write-config-to wrote masqueradeAll, masqueradeBit and the sync
// periods under nftables: whatever the mode, so a configuration of mode ipvs (or iptables, as
// read before the backend choice) lost them when read back.
TEST(FuzzRegressionTest, PerModeFieldsAreWrittenWhereTheirModeReadsThem) {
  const std::string head =
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";
  const std::vector<std::string> inputs = {
      head +
          "mode: ipvs\niptables: {masqueradeAll: true, masqueradeBit: 10}\n"
          "ipvs: {syncPeriod: 40s, minSyncPeriod: 3s}\n",
      head + "mode: iptables\niptables: {masqueradeBit: 10, syncPeriod: 40s}\n",
      head + "mode: nftables\nnftables: {masqueradeBit: 10, syncPeriod: 40s}\n",
  };
  auto noFlags = [](const std::string&) { return false; };
  for (const auto& text : inputs) {
    proxier::Config first;
    std::string minSync, sync;
    auto r = proxier::applyConfigText(text, "in.yaml", first, minSync, sync, noFlags);
    ASSERT_EQ(r.error, "") << text;
    // The daemon applies the sync periods it was handed; so does this test.
    first.syncPeriod = *parseDuration(sync.empty() ? "30s" : sync);
    first.minSyncPeriod = *parseDuration(minSync.empty() ? "1s" : minSync);
    EXPECT_EQ(first.masqueradeBit, 10) << text;
    const std::string rendered = proxier::renderConfig(first);
    proxier::Config again;
    std::string minSync2, sync2;
    auto r2 = proxier::applyConfigText(rendered, "rendered.yaml", again, minSync2, sync2, noFlags);
    ASSERT_EQ(r2.error, "") << rendered;
    for (const auto& w : r2.warnings) EXPECT_EQ(w.find("ignored"), std::string::npos) << w;
    again.syncPeriod = *parseDuration(sync2.empty() ? "30s" : sync2);
    again.minSyncPeriod = *parseDuration(minSync2.empty() ? "1s" : minSync2);
    EXPECT_EQ(again.masqueradeBit, 10) << rendered;
    EXPECT_EQ(again.syncPeriod, 40s) << rendered;
    EXPECT_EQ(proxier::renderConfig(again), rendered);
  }
}

// manifest_hostile_test.py: a random-bytes file's YAML error quoted a byte that is not UTF-8,
// and an object name held a terminal escape sequence; both went into the log as they were.
TEST(FuzzRegressionTest, LogTextIsPrintableUtf8) {
  using proxier::printable;
  EXPECT_EQ(printable("plain /tmp/a.yaml: \"x\""), "plain /tmp/a.yaml: \"x\"");
  EXPECT_EQ(printable("caf\xc3\xa9 10\xc2\xb5s \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 10\xc2\xb5s \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(printable("unknown escape character: \xea"), "unknown escape character: \\xea");
  EXPECT_EQ(printable("a\x1b[31mred\a\n"), "a\\x1b[31mred\\x07\\x0a");
  // C1 controls, overlong forms, surrogates, truncated sequences.
  EXPECT_EQ(printable("\xc2\x9b\xc0\xaf\xed\xa0\x80\xe2\x82"),
            "\\xc2\\x9b\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82");
}

TEST(FuzzRegressionTest, ObjectNamesFollowTheApiServersRules) {
  auto decode = [](const std::string& name, const std::string& ns) {
    std::string text = R"({"apiVersion":"v1","kind":"Service","metadata":{"name":")" + name +
                       R"(","namespace":")" + ns + R"("},"spec":{"clusterIP":"10.96.0.1"}})";
    auto results = slicewatch::decodeJsonDocument(text, slicewatch::DecodeOptions{"f.json"});
    EXPECT_EQ(results.size(), 1u);
    return results.at(0);
  };
  EXPECT_TRUE(std::holds_alternative<slicewatch::DecodedObject>(decode("web-1.a", "default")));
  EXPECT_TRUE(
      std::holds_alternative<slicewatch::DecodedObject>(decode(std::string(253, 'a'), "x")));
  for (auto [name, ns, field] : {std::tuple{"a\\u001b[31mred", "default", "metadata.name"},
                                 std::tuple{"Web", "default", "metadata.name"},
                                 std::tuple{"-web", "default", "metadata.name"},
                                 std::tuple{"web", "a b", "metadata.namespace"},
                                 std::tuple{"web_1", "default", "metadata.name"}}) {
    auto r = decode(name, ns);
    auto* rej = std::get_if<proxier::Rejection>(&r);
    ASSERT_NE(rej, nullptr) << name << " " << ns;
    EXPECT_EQ(rej->field, field);
    EXPECT_EQ(rej->reason, "invalid_value");
    EXPECT_EQ(rej->describe().find('\x1b'), std::string::npos) << rej->describe();
  }
  auto r = decode(std::string(254, 'a'), "default");
  EXPECT_TRUE(std::holds_alternative<proxier::Rejection>(r));
}

std::vector<std::string> frame(slicewatch::WatchLineFramer& f,
                               const std::vector<std::string>& pieces, bool finish = true) {
  std::vector<std::string> lines;
  auto on = [&](std::string& line) {
    lines.push_back(line);
    return false;
  };
  for (const auto& p : pieces) f.feed(p, on);
  if (finish) f.finish(on);
  return lines;
}

TEST(WatchLineFramerTest, LinesCutAnywhereAreJoinedAndBlankOnesSkipped) {
  slicewatch::WatchLineFramer f;
  EXPECT_EQ(frame(f, {"{\"a\"", ":1}\n\n  \r\n{\"b\":2}\r", "\n{\"c\"", ":3}"}),
            (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}\r", "{\"c\":3}"}));
}

TEST(WatchLineFramerTest, StopsWhenAskedAndDropsTheRest) {
  slicewatch::WatchLineFramer f;
  int seen = 0;
  auto stopAtSecond = [&](std::string&) { return ++seen == 2; };
  EXPECT_TRUE(f.feed("1\n2\n3\n", stopAtSecond));
  EXPECT_EQ(seen, 2);
  EXPECT_FALSE(f.finish(stopAtSecond));
  EXPECT_EQ(seen, 2);
}

// A server that sends an endless line must not take the daemon's memory: the limit counts the
// bytes of the line still open, however they arrive.
TEST(WatchLineFramerTest, AnOverlongLineBreaksTheStream) {
  slicewatch::WatchLineFramer f(10);
  EXPECT_EQ(frame(f, {"0123456789\n"}, false), std::vector<std::string>{"0123456789"});
  std::string error;
  try {
    frame(f, {"01234", "56789", "0"}, false);
  } catch (const slicewatch::WatchLineTooLong& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("longer than 10 bytes"), std::string::npos) << error;
  slicewatch::WatchLineFramer g(10);
  EXPECT_THROW(frame(g, {"short\n01234567890123"}), slicewatch::WatchLineTooLong);
}

}  // namespace
}  // namespace sliceproxy::testing
