#include "proxier/ops/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>

namespace sliceproxy::proxier {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string urlDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hexValue(s[i + 1]) >= 0 && hexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<const HttpHandler> handler)
      : stream_(std::move(socket)), handler_(std::move(handler)) {}

  void run() { read(); }

 private:
  void read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->shutdown();
                       self->respond();
                     });
  }

  void respond() {
    HttpRequest r{std::string(req_.method_string()), std::string(req_.target())};
    HttpResponse out;
    try {
      out = (*handler_)(r);
    } catch (const std::exception& e) {
      out = {500, "text/plain; charset=utf-8", {}, std::string("internal error: ") + e.what() + "\n"};
    }
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(out.status), req_.version());
    res->set(http::field::server, "sliceproxy");
    res->set(http::field::content_type, out.contentType);
    res->set("X-Content-Type-Options", "nosniff");
    for (auto& [k, v] : out.headers) res->set(k, v);
    res->keep_alive(req_.keep_alive());
    if (req_.method() != http::verb::head) res->body() = std::move(out.body);
    res->prepare_payload();
    if (req_.method() == http::verb::head) res->content_length(out.body.size());
    stream_.expires_after(std::chrono::seconds(30));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive()) return self->shutdown();
                        self->read();
                      });
  }

  void shutdown() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  std::shared_ptr<const HttpHandler> handler_;
};

}  // namespace

std::optional<std::string> HttpRequest::query(std::string_view name) const {
  auto q = target.find('?');
  if (q == std::string::npos) return std::nullopt;
  std::string_view rest = std::string_view(target).substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view part = rest.substr(0, amp);
    auto eq = part.find('=');
    if (urlDecode(part.substr(0, eq)) == name) {
      return eq == std::string_view::npos ? std::string() : urlDecode(part.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return std::nullopt;
}

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return (host.empty() ? "0.0.0.0" : host) + ":" + std::to_string(port);
}

std::optional<HostPort> parseHostPort(std::string_view text, std::string& error) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    error = "\"" + std::string(text) + "\" is not host:port (example: 0.0.0.0:10256)";
    return std::nullopt;
  }
  std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    error = "\"" + std::string(text) + "\": an IPv6 address needs brackets ([::1]:10256)";
    return std::nullopt;
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    error = "\"" + std::string(text) + "\": port must be a number 0..65535";
    return std::nullopt;
  }
  if (!host.empty()) {
    beast::error_code aec;
    asio::ip::make_address(std::string(host), aec);
    if (aec) {
      error = "\"" + std::string(text) + "\": \"" + std::string(host) + "\" is not an IP address";
      return std::nullopt;
    }
  }
  return HostPort{std::string(host), static_cast<uint16_t>(value)};
}

class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& ioc, const HostPort& addr, HttpHandler handler)
      : ioc_(ioc),
        acceptor_(asio::make_strand(ioc)),
        handler_(std::make_shared<const HttpHandler>(std::move(handler))) {
    auto ip = addr.host.empty() ? asio::ip::address(asio::ip::address_v4::any())
                                : asio::ip::make_address(addr.host);
    tcp::endpoint ep(ip, addr.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
  }
  uint16_t port() const { return port_; }
  void start() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] { self->accept(); });
  }
  void close() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->acceptor_.close(ec);
    });
  }

 private:
  void accept() {
    acceptor_.async_accept(asio::make_strand(ioc_),
                           [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
                             if (ec == asio::error::operation_aborted ||
                                 !self->acceptor_.is_open())
                               return;
                             if (!ec) std::make_shared<Session>(std::move(s), self->handler_)->run();
                             self->accept();
                           });
  }
  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  std::shared_ptr<const HttpHandler> handler_;
  uint16_t port_ = 0;
};

unsigned httpGetLoopback(uint16_t port, const std::string& target, std::string& body,
                         std::string& error) {
  try {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, "127.0.0.1");
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    body = res.body();
    return res.result_int();
  } catch (const std::exception& e) {
    error = e.what();
    return 0;
  }
}

HttpServer::HttpServer(int threads) : threads_(threads) {}

HttpServer::~HttpServer() { stop(); }

int HttpServer::listen(const HostPort& addr, HttpHandler handler) {
  auto l = std::make_shared<Listener>(ioc_, addr, std::move(handler));
  l->start();
  std::lock_guard lock(mu_);
  int id = nextId_++;
  listeners_[id] = std::move(l);
  return id;
}

uint16_t HttpServer::boundPort(int id) const {
  std::lock_guard lock(mu_);
  auto it = listeners_.find(id);
  return it == listeners_.end() ? 0 : it->second->port();
}

void HttpServer::close(int id) {
  std::shared_ptr<Listener> l;
  {
    std::lock_guard lock(mu_);
    auto it = listeners_.find(id);
    if (it == listeners_.end()) return;
    l = std::move(it->second);
    listeners_.erase(it);
  }
  l->close();
}

void HttpServer::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  for (int i = 0; i < threads_; ++i) {
    pool_.emplace_back([this] {
      auto guard = asio::make_work_guard(ioc_);
      ioc_.run();
    });
  }
}

void HttpServer::stop() {
  {
    std::lock_guard lock(mu_);
    for (auto& [id, l] : listeners_) l->close();
    listeners_.clear();
  }
  ioc_.stop();
  for (auto& t : pool_) {
    if (t.joinable()) t.join();
  }
  pool_.clear();
}

}  // namespace sliceproxy::proxier
