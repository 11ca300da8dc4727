#include "slice-watch/beast_transport.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>
#include <vector>

namespace sliceproxy::slicewatch {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);
// A server that takes the request and never answers: the response header must come within this,
// whatever the request's own deadline (a watch's is its timeoutSeconds, minutes away).
constexpr auto kHeaderTimeout = std::chrono::seconds(30);

std::chrono::seconds parseRetryAfter(std::string_view v) {
  uint64_t n = 0;
  if (v.empty() || v.size() > 9) return std::chrono::seconds(0);
  for (char c : v) {
    if (c < '0' || c > '9') return std::chrono::seconds(0);
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return std::chrono::seconds(n);
}
constexpr size_t kReadChunk = 256 * 1024;

bool isIpAddress(const std::string& host) {
  error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

struct BeastTransport::Impl {
  ApiConfig cfg;
  std::shared_ptr<BearerToken> token;
  std::shared_ptr<TlsMaterialSource> tlsSource;
  std::string userAgent;

  // Declared first so that it is destroyed last, after every stream that uses it.
  net::io_context ioc;
  // Rebuilt, between connections, when the TLS material changes (rotated files, a new
  // certificate from an exec plugin); `built` is what it holds.
  std::unique_ptr<ssl::context> ctx;
  TlsMaterial built;
  tcp::resolver resolver{ioc};
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  bool connected = false;
  bool reusable = false;  // the last response was read to its end and the server keeps alive
  std::atomic<bool> cancelled{false};
  std::vector<char> chunk = std::vector<char>(kReadChunk);

  Impl(const ApiConfig& c, std::shared_ptr<BearerToken> t, std::shared_ptr<TlsMaterialSource> m,
       std::string ua)
      : cfg(c), token(std::move(t)), tlsSource(std::move(m)), userAgent(std::move(ua)) {
    if (!cfg.server.tls) return;
    if (!tlsSource) tlsSource = std::make_shared<TlsMaterialSource>(cfg, nullptr);
    built = tlsSource->current();
    ctx = makeContext(built);
  }

  // Throws std::runtime_error saying what is unusable.
  std::unique_ptr<ssl::context> makeContext(const TlsMaterial& m) const {
    auto c = std::make_unique<ssl::context>(ssl::context::tls_client);
    c->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    try {
      if (cfg.insecureSkipTlsVerify) {
        c->set_verify_mode(ssl::verify_none);
      } else {
        c->set_verify_mode(ssl::verify_peer);
        if (m.caPem.empty()) {
          c->set_default_verify_paths();
        } else {
          c->add_certificate_authority(net::buffer(m.caPem));
        }
      }
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error(
          fmt::format("{}: the certificate authority is not a usable PEM certificate ({})",
                      cfg.origin, e.code().message()));
    }
    if (!m.certPem.empty()) {
      try {
        c->use_certificate_chain(net::buffer(m.certPem));
        c->use_private_key(net::buffer(m.keyPem), ssl::context::pem);
      } catch (const boost::system::system_error& e) {
        throw std::runtime_error(fmt::format("{}: the client certificate or key is not usable ({})",
                                             cfg.origin, e.code().message()));
      }
      if (SSL_CTX_check_private_key(c->native_handle()) != 1) {
        throw std::runtime_error(
            fmt::format("{}: the client key does not match the client certificate", cfg.origin));
      }
    }
    return c;
  }

  // Between connections: a context for TLS material that changed. Material that does not work
  // (a certificate whose key is not written yet) keeps the previous context and is tried again
  // at the next connection.
  void refreshContext() {
    TlsMaterial m = tlsSource->current();
    if (m == built) return;
    try {
      ctx = makeContext(m);
      built = std::move(m);
      spdlog::info("{}: new TLS material in use from this connection on", cfg.origin);
    } catch (const std::exception& e) {
      spdlog::warn("{}; keeping the previous TLS material", e.what());
      tlsSource->stale();
    }
  }

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  template <class F>
  void withStream(F&& f) {
    if (tls) {
      f(*tls);
    } else {
      f(*plain);
    }
  }

  // Runs one asynchronous operation to completion on this thread. `start` receives the
  // completion handler to pass to the operation.
  template <class Start>
  error_code run(Start&& start) {
    if (cancelled) throw Cancelled();
    ioc.restart();
    // Checked after restart(): a cancel() from now on stops the loop below.
    if (cancelled) throw Cancelled();
    std::optional<error_code> result;
    start([&result](error_code ec, auto&&...) { result = ec; });
    while (!result && ioc.run_one() > 0) {
    }
    if (!result) throw Cancelled();
    return *result;
  }

  void close() {
    error_code ignored;
    if (tls) beast::get_lowest_layer(*tls).socket().close(ignored);
    if (plain) plain->socket().close(ignored);
    // The streams stay allocated until the next connect or the destructor: a cancelled
    // operation may still be queued on the stopped io_context and refer to them.
    connected = false;
    reusable = false;
  }

  std::string where() const { return cfg.server.str(); }

  std::string describe(const error_code& ec) const {
    if (ec == beast::error::timeout) return "timed out";
    if (ec == net::error::eof || ec == ssl::error::stream_truncated) {
      return "connection closed by the server";
    }
    return ec.message();
  }

  void connect(Clock::time_point deadline) {
    close();
    buffer.clear();
    tls.reset();
    plain.reset();
    const auto connectBy = std::min(deadline, Clock::now() + kConnectTimeout);

    tcp::resolver::results_type endpoints;
    net::steady_timer guard(ioc);
    guard.expires_at(connectBy);
    guard.async_wait([this](error_code ec) {
      if (!ec) resolver.cancel();
    });
    error_code ec = run([&](auto done) {
      resolver.async_resolve(
          cfg.server.host, cfg.server.port,
          [&endpoints, done](error_code e, tcp::resolver::results_type r) mutable {
            endpoints = std::move(r);
            done(e);
          });
    });
    guard.cancel();
    if (ec) {
      throw TransportError(
          fmt::format("cannot resolve {}: {}", cfg.server.host,
                      ec == net::error::operation_aborted ? "timed out" : ec.message()));
    }

    if (cfg.server.tls) {
      refreshContext();  // no stream uses the context now
      tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc, *ctx);
    } else {
      plain = std::make_unique<beast::tcp_stream>(ioc);
    }
    lowest().expires_at(connectBy);
    ec = run([&](auto done) {
      lowest().async_connect(endpoints,
                             [done](error_code e, const tcp::endpoint&) mutable { done(e); });
    });
    if (ec) throw TransportError(fmt::format("cannot connect to {}: {}", where(), describe(ec)));

    auto& sock = lowest().socket();
    sock.set_option(tcp::no_delay(true), ec);
    sock.set_option(net::socket_base::keep_alive(true), ec);
    int idle = 30, interval = 10, count = 3;
    ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);

    if (tls) handshake(connectBy);
    connected = true;
  }

  void handshake(Clock::time_point by) {
    SSL* s = tls->native_handle();
    const std::string& name = cfg.tlsServerName.empty() ? cfg.server.host : cfg.tlsServerName;
    const bool ip = isIpAddress(name);
    if (!ip) SSL_set_tlsext_host_name(s, name.c_str());  // SNI carries DNS names only
    if (!cfg.insecureSkipTlsVerify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(s);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                  : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
      if (ok != 1) throw TransportError(fmt::format("cannot verify the server name {}", name));
    }
    lowest().expires_at(by);
    error_code ec = run([&](auto done) { tls->async_handshake(ssl::stream_base::client, done); });
    if (!ec) return;
    std::string why = describe(ec);
    if (ec.category() == net::error::get_ssl_category()) {
      // OpenSSL's own words ("tlsv1 alert protocol version") do not say which side refused.
      int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
      if (reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION || reason == SSL_R_UNSUPPORTED_PROTOCOL)
        why += ": the server offers no TLS version from 1.2 up (1.0 and 1.1 are refused)";
    }
    long verify = SSL_get_verify_result(s);
    if (verify != X509_V_OK) {
      why = fmt::format("the server certificate was refused: {} (verified against {}{})",
                        X509_verify_cert_error_string(verify),
                        built.caPem.empty() ? "the system trust store" : "the CA of ",
                        built.caPem.empty() ? "" : cfg.origin);
    }
    tlsSource->stale();
    close();
    throw TransportError(fmt::format("TLS handshake with {} failed: {}", where(), why));
  }
};

namespace {

class BeastResponse : public HttpResponse {
 public:
  BeastResponse(BeastTransport::Impl& t, Clock::time_point deadline) : t_(t), deadline_(deadline) {
    parser_.body_limit(boost::none);  // a list page of 500 big slices is tens of megabytes
  }
  ~BeastResponse() override {
    // Abandoned before its end: what is left of the body would be read as the next response.
    if (!done_) t_.close();
  }

  http::response_parser<http::buffer_body>& parser() { return parser_; }
  void setStatus(int s) { status_ = s; }
  void setRetryAfter(std::chrono::seconds s) { retryAfter_ = s; }

  bool read(std::string& out) override {
    if (done_) return false;
    if (parser_.is_done()) {
      finish();
      return false;
    }
    auto& body = parser_.get().body();
    body.data = t_.chunk.data();
    body.size = t_.chunk.size();
    t_.lowest().expires_at(deadline_);
    error_code ec = t_.run([&](auto done) {
      t_.withStream([&](auto& s) { http::async_read_some(s, t_.buffer, parser_, done); });
    });
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      done_ = true;
      t_.close();
      throw TransportError(fmt::format("reading from {} failed: {}", t_.where(), t_.describe(ec)));
    }
    out.append(t_.chunk.data(), t_.chunk.size() - body.size);
    if (parser_.is_done()) finish();
    return true;
  }

 private:
  void finish() {
    done_ = true;
    t_.reusable = parser_.get().keep_alive();
    if (!t_.reusable) t_.close();
  }

  BeastTransport::Impl& t_;
  Clock::time_point deadline_;
  http::response_parser<http::buffer_body> parser_;
  bool done_ = false;
};

}  // namespace

BeastTransport::BeastTransport(const ApiConfig& cfg, std::shared_ptr<BearerToken> token,
                               std::string userAgent, std::shared_ptr<TlsMaterialSource> tls)
    : impl_(std::make_unique<Impl>(cfg, std::move(token), std::move(tls), std::move(userAgent))) {}

BeastTransport::~BeastTransport() {
  if (impl_) impl_->close();
}

void BeastTransport::cancel() {
  impl_->cancelled = true;
  impl_->ioc.stop();
}

void BeastTransport::credentialsRejected() {
  if (impl_->token) impl_->token->invalidate();
  if (impl_->tlsSource) impl_->tlsSource->stale();
}

std::unique_ptr<HttpResponse> BeastTransport::get(const std::string& target,
                                                  std::chrono::seconds timeout) {
  return send(http::verb::get, target, nullptr, timeout);
}

std::unique_ptr<HttpResponse> BeastTransport::post(const std::string& target,
                                                   const std::string& json,
                                                   std::chrono::seconds timeout) {
  return send(http::verb::post, target, &json, timeout);
}

std::unique_ptr<HttpResponse> BeastTransport::send(http::verb verb, const std::string& target,
                                                   const std::string* json,
                                                   std::chrono::seconds timeout) {
  Impl& t = *impl_;
  const auto deadline = Clock::now() + timeout;
  for (int attempt = 0;; ++attempt) {
    const bool reused = t.connected && t.reusable;
    if (!reused) t.connect(deadline);
    t.reusable = false;

    http::request<http::string_body> req{verb, t.cfg.server.basePath + target, 11};
    req.set(http::field::host, t.cfg.server.hostHeader());
    req.set(http::field::user_agent, t.userAgent);
    req.set(http::field::accept, "application/json");
    if (t.token) {
      std::string bearer = t.token->get();
      if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
    }
    req.keep_alive(true);
    if (json) {
      req.set(http::field::content_type, "application/json");
      req.body() = *json;
      req.prepare_payload();
    }

    auto resp = std::make_unique<BeastResponse>(t, deadline);
    t.lowest().expires_at(deadline);
    error_code ec =
        t.run([&](auto done) { t.withStream([&](auto& s) { http::async_write(s, req, done); }); });
    if (!ec) {
      t.lowest().expires_at(std::min(deadline, Clock::now() + kHeaderTimeout));
      ec = t.run([&](auto done) {
        t.withStream([&](auto& s) { http::async_read_header(s, t.buffer, resp->parser(), done); });
      });
    }
    if (ec) {
      t.close();
      // A kept-alive connection the server has meanwhile closed: try once on a fresh one.
      if (reused && attempt == 0) continue;
      throw TransportError(fmt::format("request to {} failed: {}", t.where(), t.describe(ec)));
    }
    resp->setStatus(resp->parser().get().result_int());
    const auto& header = resp->parser().get();
    if (auto it = header.find(http::field::retry_after); it != header.end()) {
      resp->setRetryAfter(
          parseRetryAfter(std::string_view(it->value().data(), it->value().size())));
    }
    return resp;
  }
}

}  // namespace sliceproxy::slicewatch
