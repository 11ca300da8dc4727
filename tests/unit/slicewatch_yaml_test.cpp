// YAML to JSON conversion (core-schema scalar typing, multi-document streams, errors) and YAML
// decoding through the JSON decoder.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "proxier/config/bounded_file.h"
#include "slice-watch/manifest_file.h"
#include "slice-watch/reasons.h"
#include "slice-watch/yaml_decoder.h"
#include "slice-watch/yaml_to_json.h"

namespace sliceproxy::slicewatch {
namespace {

std::string json(std::string_view yaml) {
  auto docs = yamlToJson(yaml);
  EXPECT_EQ(docs.size(), 1u);
  return docs.empty() ? "" : docs[0].json;
}

TEST(SlicewatchYaml, PlainScalarsAreTyped) {
  EXPECT_EQ(json("a: 80\nb: -7\nc: +030080\nd: 0x50\ne: 0o17\nf: 0\n"),
            R"({"a":80,"b":-7,"c":30080,"d":80,"e":15,"f":0})");
  EXPECT_EQ(json("a: 1.5\nb: .5\nc: 80.0\nd: 1e3\ne: -2.5E-3\n"),
            R"({"a":1.5,"b":0.5,"c":80.0,"d":1000.0,"e":-0.0025})");
  EXPECT_EQ(json("a: true\nb: false\nc: True\nd: FALSE\n"),
            R"({"a":true,"b":false,"c":true,"d":false})");
  EXPECT_EQ(json("a: null\nb: ~\nc:\nd: Null\n"), R"({"a":null,"b":null,"c":null,"d":null})");
  // YAML 1.1 booleans and everything else that only looks special stay strings.
  EXPECT_EQ(json("a: yes\nb: off\nc: 10.0.0.1\nd: 1.2.3\ne: 0x\nf: .inf\ng: 12abc\n"),
            R"({"a":"yes","b":"off","c":"10.0.0.1","d":"1.2.3","e":"0x","f":".inf","g":"12abc"})");
}

TEST(SlicewatchYaml, QuotedAndTaggedScalarsStayStrings) {
  EXPECT_EQ(json("a: \"80\"\nb: 'true'\nc: \"\"\nd: 'null'\ne: !!str 80\n"),
            R"({"a":"80","b":"true","c":"","d":"null","e":"80"})");
  EXPECT_EQ(json("a: !!int 80\nb: !!float 1\nc: !!bool true\nd: !!null ''\n"),
            R"({"a":80,"b":1.0,"c":true,"d":null})");
}

TEST(SlicewatchYaml, StringsAreEscaped) {
  EXPECT_EQ(json("a: \"q\\\"b\\\\s\\nn\\tt\\x01\"\n"), R"({"a":"q\"b\\s\nn\tt\u0001"})");
  EXPECT_EQ(json("a: |\n  line1\n  line2\n"), R"({"a":"line1\nline2\n"})");
  EXPECT_EQ(json("\"k:1\": v\n"), R"({"k:1":"v"})");
}

TEST(SlicewatchYaml, CollectionsAndAliases) {
  EXPECT_EQ(json("a: [1, x, {b: c}]\nd: {}\ne: []\n"), R"({"a":[1,"x",{"b":"c"}],"d":{},"e":[]})");
  EXPECT_EQ(json("base: &p {port: 80}\ncopy: *p\n"), R"({"base":{"port":80},"copy":{"port":80}})");
}

TEST(SlicewatchYaml, MultiDocumentSkipsEmptyDocuments) {
  auto docs = yamlToJson("---\n# nothing\n---\na: 1\n---\n---\nb: 2\n...\n---\n");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].json, R"({"a":1})");
  EXPECT_EQ(docs[0].line, 4);
  EXPECT_EQ(docs[1].json, R"({"b":2})");
  EXPECT_TRUE(yamlToJson("").empty());
  EXPECT_TRUE(yamlToJson("# only a comment\n").empty());
}

TEST(SlicewatchYaml, ComplexKeysAreErrors) {
  try {
    yamlToJson("a: 1\n? [x, y]\n: 2\n");
    FAIL() << "expected a YamlError";
  } catch (const YamlError& e) {
    EXPECT_EQ(e.line, 2);
  }
}

TEST(SlicewatchYaml, SyntaxErrorIsOneRejectionWithTheLine) {
  auto results = decodeYaml(
      "kind: Node\nmetadata:\n  name: a\n---\nkind: Node\nmetadata:\n  name: [b\n  x: 1\n",
      DecodeOptions{"nodes.yaml"});
  ASSERT_EQ(results.size(), 1u);
  auto& r = std::get<proxier::Rejection>(results[0]);
  EXPECT_EQ(r.reason, reason::kMalformedYaml);
  EXPECT_EQ(r.origin, "nodes.yaml");
  EXPECT_NE(r.message.find("line "), std::string::npos) << r.message;
  EXPECT_TRUE(r.kind.empty());
}

TEST(SlicewatchYaml, DecodesEveryDocumentAndKeepsGoodOnesAroundABadOne) {
  auto results = decodeYaml(R"(apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata: {name: bad}
spec:
  ports:
  - port: "80"
---
apiVersion: v1
kind: List
items:
- kind: Node
  metadata: {name: node-a}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: web-1
    namespace: shop
    labels: {kubernetes.io/service-name: web}
  addressType: IPv4
  endpoints:
  - addresses: [10.244.1.5]
    conditions: {ready: true, terminating: false}
  ports:
  - {port: 8080}
)",
                            DecodeOptions{"all.yaml"});
  ASSERT_EQ(results.size(), 4u);
  auto svc = std::get<proxier::ServicePtr>(std::get<DecodedObject>(results[0]).object);
  EXPECT_EQ(svc->key, (proxier::ObjectKey{"shop", "web"}));
  EXPECT_EQ(svc->ports[0].targetPort.number, 8080);
  auto& bad = std::get<proxier::Rejection>(results[1]);
  EXPECT_EQ(bad.object, "default/bad");
  EXPECT_EQ(bad.field, "spec.ports[0].port");
  EXPECT_EQ(bad.reason, reason::kWrongType);  // quoted: a string, as kubectl would see it
  EXPECT_EQ(std::get<DecodedObject>(results[2]).kind, "Node");
  auto slice = std::get<proxier::SlicePtr>(std::get<DecodedObject>(results[3]).object);
  EXPECT_EQ(slice->serviceName, "web");
  EXPECT_EQ(slice->endpoints[0].conditions.ready, true);
  EXPECT_EQ(slice->endpoints[0].conditions.serving, std::nullopt);
  EXPECT_EQ(slice->endpoints[0].addresses[0].str(), "10.244.1.5");
}

TEST(SlicewatchYaml, YamlAndJsonGiveTheSameObject) {
  auto y = decodeYaml("kind: Node\nmetadata:\n  name: n\n  labels: {a: \"1\"}\n", {});
  auto j = decodeManifest(R"({"kind":"Node","metadata":{"name":"n","labels":{"a":"1"}}})",
                          ManifestFormat::Json, {});
  ASSERT_EQ(y.size(), 1u);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(*std::get<proxier::NodePtr>(std::get<DecodedObject>(y[0]).object),
            *std::get<proxier::NodePtr>(std::get<DecodedObject>(j[0]).object));
}

TEST(SlicewatchManifestFile, NamesThatAreManifests) {
  EXPECT_EQ(manifestFormat("a.yaml"), ManifestFormat::Yaml);
  EXPECT_EQ(manifestFormat("a.yml"), ManifestFormat::Yaml);
  EXPECT_EQ(manifestFormat("a.json"), ManifestFormat::Json);
  EXPECT_EQ(manifestFormat("a.yaml~"), std::nullopt);
  EXPECT_EQ(manifestFormat(".a.yaml.swp"), std::nullopt);
  EXPECT_EQ(manifestFormat(".a.yaml"), std::nullopt);
  EXPECT_EQ(manifestFormat(".#a.yaml"), std::nullopt);
  EXPECT_EQ(manifestFormat("..data"), std::nullopt);
  EXPECT_EQ(manifestFormat("a.yaml.tmp"), std::nullopt);
  EXPECT_EQ(manifestFormat("README.md"), std::nullopt);
  EXPECT_EQ(manifestFormat(""), std::nullopt);
}

TEST(SlicewatchManifestFile, MissingFileIsOneRefusalNamingIt) {
  auto results = decodeManifestFile("/nonexistent/dir/x.yaml", DecodeOptions{"x.yaml"}, 1 << 20);
  ASSERT_EQ(results.size(), 1u);
  const auto& rej = std::get<proxier::Rejection>(results[0]);
  EXPECT_EQ(rej.reason, reason::kFileRefused);
  EXPECT_NE(rej.message.find("/nonexistent/dir/x.yaml"), std::string::npos) << rej.message;
}

TEST(SlicewatchManifestFile, SpecialFilesAndLargeFilesAreRefusedUnread) {
  // /dev/zero would never end; a character device is refused before any read.
  auto zero = decodeManifestFile("/dev/zero", DecodeOptions{"/dev/zero"}, 1 << 20);
  ASSERT_EQ(zero.size(), 1u);
  EXPECT_EQ(std::get<proxier::Rejection>(zero[0]).reason, reason::kFileRefused);
  EXPECT_NE(std::get<proxier::Rejection>(zero[0]).message.find("character device"),
            std::string::npos);

  char dir[] = "/tmp/sliceproxy-bounded-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string fifo = std::string(dir) + "/p.yaml", big = std::string(dir) + "/big.yaml";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto pipe = decodeManifestFile(fifo, DecodeOptions{fifo}, 1 << 20);  // must not block
  ASSERT_EQ(pipe.size(), 1u);
  EXPECT_NE(std::get<proxier::Rejection>(pipe[0]).message.find("FIFO"), std::string::npos);

  {
    std::ofstream f(big);
    f << "apiVersion: v1\n";
  }
  ASSERT_EQ(truncate(big.c_str(), 1ll << 30), 0);  // sparse
  auto huge = decodeManifestFile(big, DecodeOptions{big}, 64 << 20);
  ASSERT_EQ(huge.size(), 1u);
  EXPECT_EQ(std::get<proxier::Rejection>(huge[0]).reason, reason::kFileRefused);
  EXPECT_NE(std::get<proxier::Rejection>(huge[0]).message.find("1073741824 bytes"),
            std::string::npos);
  unlink(fifo.c_str());
  unlink(big.c_str());
  rmdir(dir);
}

TEST(SlicewatchManifestFile, BoundedReadSeesAFileGrowPastTheLimit) {
  char path[] = "/tmp/sliceproxy-grow-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "abcd", 4), 4);
  auto ok = proxier::readBoundedFile(path, 4);
  ASSERT_TRUE(ok.text);
  EXPECT_EQ(*ok.text, "abcd");
  ASSERT_EQ(write(fd, "e", 1), 1);
  auto over = proxier::readBoundedFile(path, 4);
  EXPECT_FALSE(over.text);
  EXPECT_TRUE(over.tooLarge);
  EXPECT_FALSE(over.transient);
  close(fd);
  unlink(path);
}

TEST(SlicewatchYaml, AliasBombIsRefusedQuicklyNamingTheLimit) {
  // Nine levels of ten aliases: 10^9 scalars if expanded.
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) text += (j ? ", *a" : "*a") + std::to_string(i - 1);
    text += "]\n";
  }
  auto t0 = std::chrono::steady_clock::now();
  auto results = decodeYaml(text, DecodeOptions{"bomb.yaml"});
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(results.size(), 1u);
  const auto& rej = std::get<proxier::Rejection>(results[0]);
  EXPECT_EQ(rej.reason, reason::kMalformedYaml);
  EXPECT_NE(rej.message.find("expands to more than"), std::string::npos) << rej.message;
  EXPECT_LT(took, std::chrono::seconds(2));
}

TEST(SlicewatchYaml, AnchorsAsKeysAndValuesKeepTheirTypes) {
  auto docs = yamlToJson("k: &p 80\nv: *p\n&n name: x\ny: {*n : z}\nq: &q \"80\"\nr: *q\n");
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].json, R"({"k":80,"v":80,"name":"x","y":{"name":"z"},"q":"80","r":"80"})");
}

}  // namespace
}  // namespace sliceproxy::slicewatch
