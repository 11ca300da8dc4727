#pragma once
// HttpTransport over Boost.Beast: HTTP/1.1, over TLS (OpenSSL) unless the server URL is http.
//
// - The server certificate is verified against the configured CA (or the system trust store),
//   and its name against tls-server-name or else the URL's host (an IP address is matched
//   against the certificate's IP SANs). insecure-skip-tls-verify turns verification off.
// - A client certificate is presented when configured; a bearer token is sent when there is one.
// - The connection is kept alive between requests and reopened when the server closed it.
// - TCP keepalive probes find a dead peer within about a minute even while a watch is silent.
// - Everything runs on the calling thread (one io_context per transport); cancel() from any
//   other thread stops it.

#include <boost/beast/http/verb.hpp>
#include <memory>
#include <string>

#include "slice-watch/api_config.h"
#include "slice-watch/credentials.h"
#include "slice-watch/http_transport.h"
#include "slice-watch/tls_material.h"

namespace sliceproxy::slicewatch {

class BeastTransport : public HttpTransport {
 public:
  // Throws std::runtime_error when the CA, certificate or key cannot be loaded.
  // `tls` is shared by the transports of one source (nullptr: one of its own, from `cfg`).
  BeastTransport(const ApiConfig& cfg, std::shared_ptr<BearerToken> token, std::string userAgent,
                 std::shared_ptr<TlsMaterialSource> tls = nullptr);
  ~BeastTransport() override;

  std::unique_ptr<HttpResponse> get(const std::string& target,
                                    std::chrono::seconds timeout) override;
  std::unique_ptr<HttpResponse> post(const std::string& target, const std::string& json,
                                     std::chrono::seconds timeout) override;
  void cancel() override;
  void credentialsRejected() override;

  struct Impl;

 private:
  std::unique_ptr<HttpResponse> send(boost::beast::http::verb verb, const std::string& target,
                                     const std::string* json, std::chrono::seconds timeout);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sliceproxy::slicewatch
