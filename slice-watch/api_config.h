#pragma once
// How to reach and authenticate to the Kubernetes API server, wherever it came from (a
// kubeconfig, the in-cluster service account, --master). Certificates and keys are held as PEM
// text so that a kubeconfig's *-data fields and files behave the same.

#include <optional>
#include <string>
#include <string_view>

#include "slice-watch/exec_credential.h"

namespace sliceproxy::slicewatch {

struct ServerUrl {
  bool tls = true;       // https (http only when a server URL says so)
  std::string host;      // a DNS name or an IP address, without brackets
  std::string port;      // always set: 443 / 80 when the URL has none
  std::string basePath;  // a path prefix in front of /api and /apis, without trailing slash

  std::string str() const;         // scheme://host:port[basePath]
  std::string hostHeader() const;  // host:port, IPv6 in brackets
};

// Parses "https://host[:port][/prefix]"; a bare "host[:port]" means https. nullopt with
// `error` set when it is not a usable URL; the error shows the URL redacted (redactUrl).
std::optional<ServerUrl> parseServerUrl(std::string_view text, std::string& error);

// `url` with the password of its user info replaced by "xxxxx" (Go's url.Redacted, which
// client-go uses in its errors): "https://user:xxxxx@host". For anything that shows a URL.
std::string redactUrl(std::string_view url);

struct ApiConfig {
  ServerUrl server;
  std::string caPem;  // trusted CA certificates; empty: the system trust store
  bool insecureSkipTlsVerify = false;
  std::string tlsServerName;  // name to verify the server certificate against, if not the host
  std::string token;          // a fixed bearer token
  std::string tokenFile;      // a bearer token re-read periodically; wins over `token`
  std::string clientCertPem;  // client certificate chain for mutual TLS
  std::string clientKeyPem;
  // The files caPem and the client certificate came from ("" for *-data fields): re-read when
  // they change, so a rotated certificate is used from the next connection on.
  std::string caFile;
  std::string clientCertFile;
  std::string clientKeyFile;
  std::optional<ExecConfig> exec;  // a credential plugin (kubeconfig users[].user.exec)
  std::string origin;  // where this came from, for messages: "kubeconfig /x (context y)"

  bool hasCredentials() const {
    return !token.empty() || !tokenFile.empty() || !clientCertPem.empty() || exec.has_value();
  }
};

// Reads a whole file; throws std::runtime_error naming `what` and the path.
std::string readFileOrThrow(const std::string& path, std::string_view what);

}  // namespace sliceproxy::slicewatch
