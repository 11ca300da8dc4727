// client-go exec credential plugins and rotating TLS files: the kubeconfig's exec section read
// as client-go reads it, the plugin's ExecCredential parsed and cached, a real plugin run (a
// shell script) with its request in KUBERNETES_EXEC_INFO, renewed when it expires or is
// rejected, and CA / client certificate files re-read when they change.

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "slice-watch/credentials.h"
#include "slice-watch/exec_credential.h"
#include "slice-watch/kubeconfig.h"
#include "slice-watch/tls_material.h"
#include "tests/support/temp_dir.h"

namespace sliceproxy::slicewatch {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kV1 = "client.authentication.k8s.io/v1";

using sliceproxy::testing::TempDir;

std::string credential(const std::string& status, const char* version = kV1) {
  return std::string(R"({"kind":"ExecCredential","apiVersion":")") + version + R"(","status":)" +
         status + "}";
}

TEST(SlicewatchExecCredential, ParsesTokensCertificatesAndExpiry) {
  auto c = parseExecCredential(credential(R"({"token":"t1"})"), kV1);
  EXPECT_EQ(c.token, "t1");
  EXPECT_FALSE(c.expiry);
  c = parseExecCredential(credential(R"({"clientCertificateData":"CERT","clientKeyData":"KEY",)"
                                     R"("expirationTimestamp":"2030-01-02T03:04:05Z"})"),
                          kV1);
  EXPECT_EQ(c.certPem, "CERT");
  EXPECT_EQ(c.keyPem, "KEY");
  ASSERT_TRUE(c.expiry);

  struct Bad {
    std::string text;
    const char* fragment;
  };
  const Bad bad[] = {
      {"not json", "not JSON"},
      {"[]", "not a JSON object"},
      {R"({"kind":"Other","apiVersion":"client.authentication.k8s.io/v1","status":{}})",
       "kind is \"Other\""},
      {credential(R"({"token":"t"})", "client.authentication.k8s.io/v1beta1"),
       "apiVersion is \"client.authentication.k8s.io/v1beta1\""},
      {R"({"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1"})", "no status"},
      {credential("{}"), "neither a token nor a client certificate"},
      {credential(R"({"clientCertificateData":"C"})"), "without clientKeyData"},
      {credential(R"({"token":"t","expirationTimestamp":"tomorrow"})"), "not an RFC 3339"},
      {credential(R"({"token":5})"), "status.token must be a string"},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.text);
    try {
      parseExecCredential(b.text, kV1);
      ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(b.fragment), std::string::npos) << e.what();
    }
  }
}

std::string kubeconfigWithExec(const std::string& exec) {
  return "current-context: c\n"
         "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
         "clusters: [{name: k, cluster: {server: 'https://10.0.0.1:6443', "
         "tls-server-name: api.example, certificate-authority-data: Q0EK, extensions: "
         "[{name: client.authentication.k8s.io/exec, extension: {audience: nodes, retries: "
         "3}}]}}]\n"
         "users: [{name: u, user: {exec: " +
         exec + "}}]\n";
}

TEST(SlicewatchExecCredential, KubeconfigExecReadAsClientGoReadsIt) {
  TempDir dir;
  auto cfg = loadKubeconfig(dir.write(
      "config", kubeconfigWithExec("{command: ./bin/plugin, args: [get-token, --x], env: "
                                   "[{name: A, value: b}], apiVersion: " +
                                   std::string(kV1) +
                                   ", interactiveMode: IfAvailable, provideClusterInfo: true, "
                                   "installHint: 'install it'}")));
  ASSERT_TRUE(cfg.exec);
  EXPECT_TRUE(cfg.hasCredentials());
  EXPECT_EQ(cfg.exec->command, (dir.path() / "./bin/plugin").string());
  EXPECT_EQ(cfg.exec->args, (std::vector<std::string>{"get-token", "--x"}));
  ASSERT_EQ(cfg.exec->env.size(), 1u);
  EXPECT_EQ(cfg.exec->env[0], (std::pair<std::string, std::string>{"A", "b"}));
  EXPECT_EQ(cfg.exec->installHint, "install it");
  auto info = boost::json::parse(execInfo(*cfg.exec)).as_object();
  EXPECT_EQ(info["kind"], "ExecCredential");
  EXPECT_EQ(info["apiVersion"], kV1);
  auto& spec = info["spec"].as_object();
  EXPECT_EQ(spec["interactive"], false);
  auto& cluster = spec["cluster"].as_object();
  EXPECT_EQ(cluster["server"], "https://10.0.0.1:6443");
  EXPECT_EQ(cluster["tls-server-name"], "api.example");
  EXPECT_EQ(cluster["certificate-authority-data"], "Q0EK");
  EXPECT_EQ(cluster["config"].as_object()["audience"], "nodes");
  EXPECT_EQ(cluster["config"].as_object()["retries"], 3);

  // A bare name is looked up in PATH; without provideClusterInfo no cluster is sent.
  cfg = loadKubeconfig(
      dir.write("config2", kubeconfigWithExec("{command: aws-iam, apiVersion: "
                                              "client.authentication.k8s.io/v1beta1}")));
  EXPECT_EQ(cfg.exec->command, "aws-iam");
  EXPECT_FALSE(
      boost::json::parse(execInfo(*cfg.exec)).as_object()["spec"].as_object().contains("cluster"));

  const std::pair<std::string, const char*> refused[] = {
      {"{command: p, apiVersion: client.authentication.k8s.io/v1alpha1}", "v1alpha1"},
      {"{command: p, apiVersion: client.authentication.k8s.io/v1}", "interactiveMode must be set"},
      {"{command: p, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Always}",
       "without a terminal"},
      {"{apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}",
       "exec.command is not set"},
  };
  for (const auto& [exec, fragment] : refused) {
    SCOPED_TRACE(exec);
    try {
      loadKubeconfig(dir.write("bad", kubeconfigWithExec(exec)));
      ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("user \"u\""), std::string::npos) << e.what();
    }
  }
}

// A real plugin: counts its runs, records its request, and prints `status` with TOKEN replaced
// by the contents of the file "token".
ExecConfig plugin(const TempDir& dir, const std::string& status) {
  dir.write("status", status);
  ExecConfig e;
  e.command = dir.write("plugin.sh",
                        "#!/bin/sh\n"
                        "echo x >> \"$DIR/runs\"\n"
                        "printf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$DIR/request\"\n"
                        "echo \"to stderr $GREETING\" >&2\n"
                        "printf '{\"kind\":\"ExecCredential\",\"apiVersion\":\"%s\",\"status\":' "
                        "\"$VERSION\"\n"
                        "sed \"s/TOKEN/$(cat \"$DIR/token\")/\" \"$DIR/status\"\n"
                        "printf '}'\n",
                        true);
  e.env = {{"DIR", dir.path().string()}, {"GREETING", "hello"}, {"VERSION", kV1}};
  e.apiVersion = kV1;
  e.origin = "kubeconfig test (user u)";
  return e;
}

size_t runs(const TempDir& dir) {
  std::string r = dir.read("runs");
  return static_cast<size_t>(std::count(r.begin(), r.end(), '\n'));
}

TEST(SlicewatchExecCredential, RunsThePluginCachesAndRenewsWhenRejected) {
  TempDir dir;
  dir.write("token", "t1");
  auto src = std::make_shared<ExecCredentialSource>(plugin(dir, R"({"token":"TOKEN"})"));
  BearerToken token("", "", 1min, src);
  token.load();
  EXPECT_EQ(token.get(), "t1");
  EXPECT_EQ(token.get(), "t1");
  EXPECT_EQ(runs(dir), 1u);  // cached: no expiry
  auto request = boost::json::parse(dir.read("request")).as_object();
  EXPECT_EQ(request["kind"], "ExecCredential");
  EXPECT_EQ(request["spec"].as_object()["interactive"], false);

  dir.write("token", "t2");
  EXPECT_EQ(token.get(), "t1");
  token.invalidate();  // the server answered 401
  EXPECT_EQ(token.get(), "t2");
  EXPECT_EQ(runs(dir), 2u);
}

TEST(SlicewatchExecCredential, AnExpiredCredentialIsRenewed) {
  TempDir dir;
  dir.write("token", "t1");
  ExecCredentialSource src(
      plugin(dir, R"({"token":"TOKEN","expirationTimestamp":"2001-01-01T00:00:00Z"})"));
  EXPECT_EQ(src.get().token, "t1");
  dir.write("token", "t2");
  EXPECT_EQ(src.get().token, "t2");
  EXPECT_EQ(runs(dir), 2u);
}

TEST(SlicewatchExecCredential, FailuresNameThePluginAndSayWhy) {
  TempDir dir;
  auto expectFailure = [&](ExecConfig e, const char* fragment,
                           std::chrono::milliseconds timeout = 5s) {
    ExecCredentialSource src(std::move(e), timeout);
    try {
      src.get();
      ADD_FAILURE() << "no failure";
    } catch (const std::runtime_error& err) {
      EXPECT_NE(std::string(err.what()).find(fragment), std::string::npos) << err.what();
      EXPECT_NE(std::string(err.what()).find("kubeconfig test (user u)"), std::string::npos)
          << err.what();
    }
  };
  ExecConfig e = plugin(dir, "{}");
  e.command =
      dir.write("fails.sh", "#!/bin/sh\necho 'no identity for this node' >&2\nexit 3\n", true);
  expectFailure(e, "exited with 3: no identity for this node");
  e.command = (dir.path() / "missing").string();
  e.installHint = "install the node-identity plugin";
  expectFailure(e, "install the node-identity plugin");
  e.command = dir.write("garbage.sh", "#!/bin/sh\necho hello\n", true);
  expectFailure(e, "not JSON");
  e.command = dir.write("hangs.sh", "#!/bin/sh\nexec sleep 30\n", true);
  const auto start = std::chrono::steady_clock::now();
  expectFailure(e, "no answer within 0.3 s", 300ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);

  // Started fine, then failing: the token it gave before stays in use.
  dir.write("token", "t1");
  auto src = std::make_shared<ExecCredentialSource>(
      plugin(dir, R"({"token":"TOKEN","expirationTimestamp":"2001-01-01T00:00:00Z"})"));
  BearerToken token("", "", 1min, src);
  token.load();
  fs::remove(dir.path() / "token");
  EXPECT_EQ(token.get(), "t1");
}

TEST(SlicewatchTlsMaterial, FilesAreReadAgainWhenTheyChange) {
  TempDir dir;
  ApiConfig cfg;
  cfg.caFile = dir.write("ca.crt", "CA1");
  cfg.clientCertFile = dir.write("client.crt", "CERT1");
  cfg.clientKeyFile = dir.write("client.key", "KEY1");
  cfg.caPem = "CA1";
  cfg.clientCertPem = "CERT1";
  cfg.clientKeyPem = "KEY1";
  TlsMaterialSource src(cfg, nullptr, 1h);
  EXPECT_EQ(src.current(), (TlsMaterial{"CA1", "CERT1", "KEY1"}));
  dir.write("client.crt", "CERT2");
  dir.write("client.key", "KEY2");
  EXPECT_EQ(src.current().certPem, "CERT1");  // not checked again before `refresh`...
  src.stale();                                // ...unless a handshake failed
  EXPECT_EQ(src.current(), (TlsMaterial{"CA1", "CERT2", "KEY2"}));
  fs::remove(dir.path() / "ca.crt");  // mid-rotation: what was read stays
  src.stale();
  EXPECT_EQ(src.current().caPem, "CA1");

  TlsMaterialSource quick(cfg, nullptr, 0s);
  dir.write("ca.crt", "CA3");
  EXPECT_EQ(quick.current().caPem, "CA3");
}

TEST(SlicewatchTlsMaterial, AnExecPluginsCertificateWins) {
  TempDir dir;
  dir.write("token", "ignored");
  auto exec = std::make_shared<ExecCredentialSource>(
      plugin(dir, R"({"clientCertificateData":"PCERT","clientKeyData":"PKEY"})"));
  ApiConfig cfg;
  cfg.caPem = "CA";
  TlsMaterialSource src(cfg, exec, 1h);
  EXPECT_EQ(src.current(), (TlsMaterial{"CA", "PCERT", "PKEY"}));
}

}  // namespace
}  // namespace sliceproxy::slicewatch
