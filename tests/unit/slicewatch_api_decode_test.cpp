// Decoding API list pages and watch events.

#include <gtest/gtest.h>

#include "slice-watch/list_page.h"
#include "slice-watch/reasons.h"
#include "slice-watch/watch_event.h"

namespace sliceproxy::slicewatch {
namespace {

const DecodeOptions kOpts{"https://api/apis/discovery.k8s.io/v1/endpointslices"};

std::string slice(const std::string& name, const std::string& ip, int port = 8080) {
  return R"({"metadata":{"name":")" + name +
         R"(","namespace":"ns","resourceVersion":"7","labels":{"kubernetes.io/service-name":"svc"}},)"
         R"("addressType":"IPv4","endpoints":[{"addresses":[")" +
         ip + R"("]}],"ports":[{"port":)" + std::to_string(port) + "}]}";
}

TEST(SlicewatchApiListPage, ItemsResourceVersionAndContinue) {
  std::string body = R"({"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1",)"
                     R"("metadata":{"resourceVersion":"42","continue":"abc"},"items":[)" +
                     slice("a", "10.0.0.1") + "," + slice("b", "10.0.0.2", 0) + "," +
                     slice("c", "10.0.0.3") + "]}";
  const std::string copy = body;
  ListPage page = decodeListPage(body, "EndpointSlice", kOpts);
  EXPECT_EQ(body, copy);
  ASSERT_EQ(page.error, "");
  EXPECT_EQ(page.resourceVersion, "42");
  EXPECT_EQ(page.continueToken, "abc");
  ASSERT_EQ(page.items.size(), 3u);
  auto& a = std::get<DecodedObject>(page.items[0]);
  EXPECT_EQ(a.kind, "EndpointSlice");
  EXPECT_EQ(a.key.str(), "ns/a");
  auto& rej = std::get<proxier::Rejection>(page.items[1]);
  EXPECT_EQ(rej.object, "ns/b");
  EXPECT_EQ(rej.field, "ports[0].port");
  EXPECT_EQ(rej.origin, kOpts.origin);
  EXPECT_TRUE(std::holds_alternative<DecodedObject>(page.items[2]));
}

TEST(SlicewatchApiListPage, BrokenPagesAreErrors) {
  for (std::string body :
       {std::string(R"({"kind":"EndpointSliceList","items":[{"metadata":)"),
        std::string("<html>oops</html>"), std::string(R"({"kind":"Status","code":500})")}) {
    ListPage page = decodeListPage(body, "EndpointSlice", kOpts);
    EXPECT_NE(page.error, "") << body;
    EXPECT_TRUE(page.items.empty()) << body;
  }
  std::string empty = R"({"kind":"NodeList","metadata":{"resourceVersion":"9"},"items":null})";
  ListPage page = decodeListPage(empty, "Node", kOpts);
  EXPECT_EQ(page.error, "");
  EXPECT_EQ(page.resourceVersion, "9");
  EXPECT_TRUE(page.items.empty());
}

std::optional<WatchEvent> decode(std::string line, std::string& error, bool namespaced = true,
                                 const char* kind = "EndpointSlice") {
  return decodeWatchEvent(line, kind, namespaced, kOpts, error);
}

TEST(SlicewatchApiWatchEvent, Types) {
  std::string err;
  auto ev = decode(R"({"type":"ADDED","object":)" + slice("a", "10.0.0.1") + "}", err);
  ASSERT_TRUE(ev) << err;
  EXPECT_EQ(ev->type, WatchEvent::Type::Added);
  EXPECT_EQ(ev->resourceVersion, "7");
  EXPECT_EQ(ev->key.str(), "ns/a");
  ASSERT_TRUE(ev->decoded);
  EXPECT_TRUE(std::holds_alternative<DecodedObject>(*ev->decoded));

  // Field order does not matter; an invalid object is a rejection, not a broken stream.
  ev = decode(R"({"object":)" + slice("b", "10.0.0.2", 70000) + R"(,"type":"MODIFIED"})", err);
  ASSERT_TRUE(ev) << err;
  EXPECT_EQ(ev->type, WatchEvent::Type::Modified);
  auto& rej = std::get<proxier::Rejection>(*ev->decoded);
  EXPECT_EQ(rej.field, "ports[0].port");
  EXPECT_EQ(rej.reason, reason::kPortOutOfRange);

  // A deleted object is identified by its metadata alone, even if it would not decode.
  ev = decode(R"({"type":"DELETED","object":{"metadata":{"name":"c","resourceVersion":"9"},)"
              R"("endpoints":"garbage"}})",
              err);
  ASSERT_TRUE(ev) << err;
  EXPECT_EQ(ev->type, WatchEvent::Type::Deleted);
  EXPECT_EQ(ev->key.str(), "default/c");
  EXPECT_FALSE(ev->decoded);

  ev = decode(R"({"type":"BOOKMARK","object":{"kind":"Node","metadata":{"resourceVersion":"99"}}})",
              err, false, "Node");
  ASSERT_TRUE(ev) << err;
  EXPECT_EQ(ev->type, WatchEvent::Type::Bookmark);
  EXPECT_EQ(ev->resourceVersion, "99");

  ev = decode(R"({"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old",)"
              R"("reason":"Expired","code":410}})",
              err);
  ASSERT_TRUE(ev) << err;
  EXPECT_EQ(ev->type, WatchEvent::Type::Error);
  EXPECT_EQ(ev->status.code, 410);
  EXPECT_EQ(ev->status.reason, "Expired");
  EXPECT_EQ(ev->status.message, "too old");
  EXPECT_TRUE(needsRelist(ev->status));

  ev = decode(R"({"type":"ERROR","object":{"kind":"Status","message":"Too large resource version: )"
              R"(9, current: 5","reason":"Timeout","details":{"causes":[{"reason":)"
              R"("ResourceVersionTooLarge","message":"Too large resource version"}]},"code":504}})",
              err);
  ASSERT_TRUE(ev) << err;
  EXPECT_EQ(ev->status.causes, std::vector<std::string>{"ResourceVersionTooLarge"});
  EXPECT_TRUE(isTooLargeResourceVersion(ev->status));
  EXPECT_FALSE(isExpired(ev->status));
  EXPECT_FALSE(needsRelist(parseStatusBody(500, R"({"kind":"Status","code":500,"message":"x"})")));
  EXPECT_FALSE(needsRelist(parseStatusBody(503, "<html>busy</html>")));
  EXPECT_TRUE(
      needsRelist(parseStatusBody(400, R"({"kind":"Status","code":400,"message":"bad rv"})")));
  // A server from before the cause existed.
  EXPECT_TRUE(isTooLargeResourceVersion(
      parseStatusBody(504, R"({"reason":"Timeout","message":"Too large resource version: 9"})")));

  ev = decode(R"({"type":"ADDED","object":{"metadata":{"name":"n1","namespace":"x"}}})", err, false,
              "Node");
  ASSERT_TRUE(ev) << err;
  EXPECT_EQ(ev->key.str(), "n1") << "cluster-scoped: no namespace";
}

TEST(SlicewatchApiWatchEvent, BrokenLinesAreStreamErrors) {
  for (
      std::string line :
      {std::string("this is not JSON {{{"), std::string(R"({"type":"ADDED"})"),
       std::string(R"({"type":"WHAT","object":{}})"), std::string(R"({"object":{}})"),
       std::string("[1,2]"),
       std::string(
           R"({"type":"ADDED","object":{"metadata":{"name":"x"},"addressType":"IPv4","endpoints":[{)")}) {
    std::string err;
    EXPECT_FALSE(decode(line, err)) << line;
    EXPECT_NE(err, "") << line;
  }
}

}  // namespace
}  // namespace sliceproxy::slicewatch
