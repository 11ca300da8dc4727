#pragma once
// client-go's exec credential plugins (kubeconfig `users[].user.exec`): the command prints an
// ExecCredential (client.authentication.k8s.io/v1 or v1beta1) holding a bearer token or a
// client certificate, with an optional expiry. Bare-metal nodes use them with external identity
// providers. The credential is cached until it expires or the server rejects it (401), then the
// plugin runs again. sliceproxy is a daemon: a plugin that needs a terminal is refused.

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sliceproxy::slicewatch {

struct ExecConfig {
  std::string command;  // resolved against the kubeconfig's directory when it holds a '/'
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string apiVersion;  // client.authentication.k8s.io/v1 or /v1beta1
  std::string installHint;
  // KUBERNETES_EXEC_INFO's spec.cluster as JSON when provideClusterInfo is set, else "".
  std::string clusterJson;
  std::string origin;  // "kubeconfig /x (user y)", for messages
};

struct ExecCredential {
  std::string token;
  std::string certPem;  // with keyPem: a client certificate for mutual TLS
  std::string keyPem;
  std::optional<std::chrono::system_clock::time_point> expiry;
  friend bool operator==(const ExecCredential&, const ExecCredential&) = default;
};

// Parses a plugin's standard output. Throws std::runtime_error saying what is wrong.
ExecCredential parseExecCredential(std::string_view json, std::string_view apiVersion);

// The ExecCredential request a plugin finds in KUBERNETES_EXEC_INFO.
std::string execInfo(const ExecConfig& cfg);

class ExecCredentialSource {
 public:
  using Clock = std::chrono::system_clock;

  explicit ExecCredentialSource(ExecConfig cfg,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // The cached credential, or a fresh one when none is cached, it expires within a minute, or
  // the server rejected it. Throws std::runtime_error naming the plugin when it fails.
  ExecCredential get();
  void invalidate();
  const ExecConfig& config() const { return cfg_; }

 private:
  ExecCredential run() const;

  const ExecConfig cfg_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::optional<ExecCredential> cached_;
  bool rejected_ = false;  // the server answered 401: run the plugin before the next request
};

}  // namespace sliceproxy::slicewatch
