// The API client's configuration: server URLs, kubeconfig and in-cluster credentials, the
// rotating bearer token, backoff, and request targets.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "slice-watch/api_resources.h"
#include "slice-watch/backoff.h"
#include "slice-watch/base64.h"
#include "slice-watch/credentials.h"
#include "slice-watch/kubeconfig.h"
#include "tests/support/temp_dir.h"

namespace sliceproxy::slicewatch {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using sliceproxy::testing::TempDir;

TEST(SlicewatchApiServerUrl, ParsesSchemesPortsAndPrefixes) {
  std::string err;
  auto u = parseServerUrl("https://10.0.0.1:6443", err);
  ASSERT_TRUE(u) << err;
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "10.0.0.1");
  EXPECT_EQ(u->port, "6443");
  EXPECT_EQ(u->str(), "https://10.0.0.1:6443");

  u = parseServerUrl("https://[fd00::1]/k8s/clusters/c-1/", err);
  ASSERT_TRUE(u) << err;
  EXPECT_EQ(u->host, "fd00::1");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->basePath, "/k8s/clusters/c-1");
  EXPECT_EQ(u->hostHeader(), "[fd00::1]:443");

  u = parseServerUrl("http://localhost", err);
  ASSERT_TRUE(u) << err;
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->port, "80");

  u = parseServerUrl("api.example.com:8443", err);
  ASSERT_TRUE(u) << err;
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "api.example.com");

  for (const char* bad : {"ftp://x", "https://:443", "https://host:99999", "https://host:0",
                          "https://[::1", "https://user@host"}) {
    err.clear();
    EXPECT_FALSE(parseServerUrl(bad, err)) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

// client-go (url.Redacted) shows "user:xxxxx@": the user, never the password.
TEST(SlicewatchApiServerUrl, ErrorsNeverShowThePassword) {
  for (const char* bad : {"https://admin:s3cret@host:6443", "ftp://admin:s3cret@host",
                          "https://admin:s3cret@host:99999", "admin:s3cret@[::1",
                          "https://admin:s3cret@:443/p", "https://admin:pa@ss:s3cret@host"}) {
    std::string err;
    EXPECT_FALSE(parseServerUrl(bad, err)) << bad;
    EXPECT_EQ(err.find("s3cret"), std::string::npos) << err;
    EXPECT_NE(err.find("admin:xxxxx@"), std::string::npos) << err;
  }
  EXPECT_EQ(redactUrl("https://admin:s3cret@host:6443/x"), "https://admin:xxxxx@host:6443/x");
  EXPECT_EQ(redactUrl("https://host:6443/a@b"), "https://host:6443/a@b");
  EXPECT_EQ(redactUrl("https://token@host"), "https://token@host");
}

TEST(SlicewatchApiBase64, DecodesWithAndWithoutPadding) {
  EXPECT_EQ(decodeBase64("aGVsbG8="), "hello");
  EXPECT_EQ(decodeBase64("aGVsbG8"), "hello");
  EXPECT_EQ(decodeBase64("aGVs\nbG8h"), "hello!");
  EXPECT_EQ(decodeBase64(""), "");
  EXPECT_FALSE(decodeBase64("aGVsbG8*"));
  EXPECT_FALSE(decodeBase64("aGV=sbG8"));
  EXPECT_FALSE(decodeBase64("a"));
}

constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: dev
  cluster: {server: "https://dev:6443"}
- name: prod
  cluster:
    server: https://10.1.2.3:6443
    certificate-authority: certs/ca.crt
    tls-server-name: kubernetes.default.svc
users:
- name: dev
  user: {token: dev-token}
- name: proxy
  user:
    tokenFile: token
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: dev
  context: {cluster: dev, user: dev}
- name: prod
  context: {cluster: prod, user: proxy}
)";

TEST(SlicewatchApiKubeconfig, ReadsTheCurrentContextWithRelativePaths) {
  TempDir dir;
  fs::create_directory(dir.path() / "certs");
  dir.write("certs/ca.crt", "CA PEM");
  std::string path = dir.write("config", kKubeconfig);
  ApiConfig cfg = loadKubeconfig(path);
  EXPECT_EQ(cfg.server.str(), "https://10.1.2.3:6443");
  EXPECT_EQ(cfg.caPem, "CA PEM");
  EXPECT_EQ(cfg.tlsServerName, "kubernetes.default.svc");
  EXPECT_EQ(cfg.tokenFile, (dir.path() / "token").string());
  EXPECT_EQ(cfg.clientCertPem, "CERT");
  EXPECT_EQ(cfg.clientKeyPem, "KEY");
  EXPECT_FALSE(cfg.insecureSkipTlsVerify);
  EXPECT_NE(cfg.origin.find("context prod"), std::string::npos);

  cfg = loadKubeconfig(path, "https://override:443");
  EXPECT_EQ(cfg.server.str(), "https://override:443");
}

TEST(SlicewatchApiKubeconfig, ClearErrors) {
  TempDir dir;
  auto expectError = [&](const std::string& text, const std::string& fragment) {
    std::string path = dir.write("config", text);
    try {
      loadKubeconfig(path);
      ADD_FAILURE() << "no error for " << text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  expectError("clusters: []\n", "current-context is not set");
  expectError("current-context: x\ncontexts: []\n", "no entry named \"x\" in contexts");
  expectError(
      "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
      "clusters: [{name: k, cluster: {server: 'https://a'}}]\n"
      "users: [{name: u, user: {exec: {command: aws}}}]\n",
      "exec.apiVersion \"\" is not supported");
  expectError(
      "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
      "clusters: [{name: k, cluster: {server: 'https://a'}}]\n"
      "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
      "auth-provider");
  expectError(
      "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
      "clusters: [{name: k, cluster: {server: 'https://a', certificate-authority-data: '!!'}}]\n",
      "certificate-authority-data is not valid base64");
  expectError(
      "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
      "clusters: [{name: k, cluster: {server: 'https://a', certificate-authority: nope.crt}}]\n",
      "nope.crt");
  expectError("current-context: [\n", "kubeconfig");
  try {
    loadKubeconfig((dir.path() / "absent").string());
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

TEST(SlicewatchApiInCluster, ReadsEnvironmentAndServiceAccount) {
  TempDir dir;
  dir.write("token", "sa-token\n");
  dir.write("ca.crt", "SA CA");
  setenv("KUBERNETES_SERVICE_HOST", "fd00::10", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  ApiConfig cfg = inClusterConfig("", dir.path().string());
  EXPECT_EQ(cfg.server.str(), "https://[fd00::10]:443");
  EXPECT_EQ(cfg.tokenFile, (dir.path() / "token").string());
  EXPECT_EQ(cfg.caPem, "SA CA");
  unsetenv("KUBERNETES_SERVICE_HOST");
  try {
    inClusterConfig("", dir.path().string());
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  }
  unsetenv("KUBERNETES_SERVICE_PORT");
}

TEST(SlicewatchApiToken, ReadsRotatesAndSurvivesAMissingFile) {
  TempDir dir;
  std::string file = dir.write("token", "  first\n");
  BearerToken t("fixed", file, 50ms);
  t.load();
  EXPECT_EQ(t.get(), "first");
  dir.write("token", "second\n");
  EXPECT_EQ(t.get(), "first") << "not re-read before the refresh period";
  t.invalidate();
  EXPECT_EQ(t.get(), "second") << "re-read at once after a 401";
  fs::remove(file);
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(t.get(), "second") << "the last good token is kept";
  dir.write("token", "third");
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(t.get(), "third") << "re-read after the refresh period";

  BearerToken missing("", (dir.path() / "absent").string());
  EXPECT_THROW(missing.load(), std::runtime_error);
  dir.write("empty", "\n");
  BearerToken empty("", (dir.path() / "empty").string());
  EXPECT_THROW(empty.load(), std::runtime_error);
  BearerToken fixed("fixed", "");
  fixed.load();
  EXPECT_EQ(fixed.get(), "fixed");
}

TEST(SlicewatchApiBackoff, GrowsWithJitterUpToTheCapAndResets) {
  Backoff b(BackoffPolicy{800ms, 30000ms, 2.0, 0.2}, 42);
  std::vector<std::chrono::milliseconds> d;
  for (int i = 0; i < 10; ++i) d.push_back(b.next());
  EXPECT_GE(d[0], 800ms);
  EXPECT_LE(d[0], 960ms);
  EXPECT_GE(d[1], 1600ms);
  EXPECT_LE(d[1], 1920ms);
  EXPECT_GE(d[5], 25600ms);
  for (auto x : d) EXPECT_LE(x, 30000ms);
  EXPECT_EQ(d[9], 30000ms);
  for (int i = 0; i < 100; ++i) EXPECT_LE(b.next(), 30000ms);
  b.reset();
  EXPECT_LE(b.next(), 960ms);
}

TEST(SlicewatchApiResources, SelectorsAndTargets) {
  EXPECT_EQ(proxyLabelSelector(""),
            "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name");
  EXPECT_EQ(proxyLabelSelector("mine"),
            "!service.kubernetes.io/headless,service.kubernetes.io/service-proxy-name=mine");
  EXPECT_EQ(listTarget(servicesResource(""), 500, ""),
            "/api/v1/services?limit=500&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21"
            "service.kubernetes.io%2Fservice-proxy-name");
  EXPECT_EQ(listTarget(nodeResource("node-a"), 500, "tok=en"),
            "/api/v1/nodes?limit=500&fieldSelector=metadata.name%3Dnode-a&continue=tok%3Den");
  EXPECT_EQ(watchTarget(endpointSlicesResource("x"), "123", 330s),
            "/apis/discovery.k8s.io/v1/endpointslices?watch=true&allowWatchBookmarks=true&"
            "resourceVersion=123&timeoutSeconds=330&labelSelector=%21service.kubernetes.io%2F"
            "headless%2Cservice.kubernetes.io%2Fservice-proxy-name%3Dx");
}

}  // namespace
}  // namespace sliceproxy::slicewatch
