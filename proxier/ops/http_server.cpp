#include "proxier/ops/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <deque>
#include <system_error>

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
    } else if (s[i] == '%' && i + 2 < s.size() && hexValue(s[i + 1]) >= 0 &&
               hexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A request must arrive within this long of the connection (or of the previous answer), and an
// answer must be taken within kWriteTimeout: idle or slow clients cannot pin descriptors.
constexpr auto kReadTimeout = std::chrono::seconds(5);
constexpr auto kWriteTimeout = std::chrono::seconds(10);

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<const HttpHandler> handler,
          std::function<void()> onEnd)
      : stream_(std::move(socket)), handler_(std::move(handler)), onEnd_(std::move(onEnd)) {}
  ~Session() {
    if (onEnd_) onEnd_();
  }

  void run() { read(); }
  // Closes the connection from another strand (a listener making room for a new one).
  void evict() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->stream_.close(); });
  }

 private:
  void read() {
    req_ = {};
    stream_.expires_after(kReadTimeout);
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
      out = {
          500, "text/plain; charset=utf-8", {}, std::string("internal error: ") + e.what() + "\n"};
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
    stream_.expires_after(kWriteTimeout);
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
  std::function<void()> onEnd_;
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
  // Connections held at once per listener; a new one beyond it closes the oldest.
  static constexpr int kMaxConnections = 64;

  Listener(asio::io_context& ioc, const HostPort& addr, HttpHandler handler)
      : ioc_(ioc),
        acceptor_(asio::make_strand(ioc)),
        retry_(acceptor_.get_executor()),
        handler_(std::make_shared<const HttpHandler>(std::move(handler))) {
    auto ip = addr.host.empty() ? asio::ip::address(asio::ip::address_v4::any())
                                : asio::ip::make_address(addr.host);
    tcp::endpoint ep(ip, addr.port);
    acceptor_.open(ep.protocol());
    // Lets a restarted daemon bind while the old process's connections sit in TIME_WAIT; it
    // never lets two listeners share a port.
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
      self->retry_.cancel();
      self->acceptor_.close(ec);
    });
  }

 private:
  void accept() {
    if (!acceptor_.is_open()) return;
    // Evictions below let a burst exceed the cap briefly; beyond twice the cap, wait for them.
    if (active_ >= 2 * kMaxConnections) {
      paused_ = true;
      return;
    }
    acceptor_.async_accept(
        asio::make_strand(ioc_), [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
          if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
          if (ec) return self->backOff(ec);
          self->failing_ = false;
          // At the cap the oldest connection makes room: connections that hold a slot and send
          // nothing must not keep a health probe waiting behind them in the backlog.
          if (self->active_ >= kMaxConnections) self->evictOldest();
          ++self->active_;
          std::weak_ptr<Listener> weak = self;
          auto session = std::make_shared<Session>(std::move(s), self->handler_, [weak] {
            if (auto l = weak.lock()) l->sessionEnded();
          });
          // A long-lived connection at the front keeps ended ones behind it from being popped.
          if (self->sessions_.size() > 4 * kMaxConnections) {
            std::erase_if(self->sessions_, [](const auto& w) { return w.expired(); });
          }
          self->sessions_.push_back(session);
          session->run();
          self->accept();
        });
  }

  void evictOldest() {
    while (!sessions_.empty()) {
      auto oldest = sessions_.front().lock();
      sessions_.pop_front();
      if (oldest) {
        oldest->evict();
        return;
      }
    }
  }

  // Out of descriptors (EMFILE/ENFILE) the pending connection stays in the backlog and accept
  // would fail again at once: wait instead of spinning, and say so once per episode.
  void backOff(const beast::error_code& ec) {
    if (!failing_) {
      spdlog::warn("listener on port {}: cannot accept a connection: {}; retrying every 100ms",
                   port_, ec.message());
      failing_ = true;
    }
    retry_.expires_after(std::chrono::milliseconds(100));
    retry_.async_wait([self = shared_from_this()](beast::error_code wec) {
      if (!wec) self->accept();
    });
  }

  void sessionEnded() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
      --self->active_;
      while (!self->sessions_.empty() && self->sessions_.front().expired()) {
        self->sessions_.pop_front();
      }
      if (self->paused_) {
        self->paused_ = false;
        self->accept();
      }
    });
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  std::shared_ptr<const HttpHandler> handler_;
  uint16_t port_ = 0;
  // On the acceptor's strand only.
  int active_ = 0;
  std::deque<std::weak_ptr<Session>> sessions_;  // in accept order; ended ones expire
  bool paused_ = false, failing_ = false;
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

HttpServer::~HttpServer() {
  stop();
}

int HttpServer::listen(const HostPort& addr, HttpHandler handler) {
  std::shared_ptr<Listener> l;
  try {
    l = std::make_shared<Listener>(ioc_, addr, std::move(handler));
  } catch (const boost::system::system_error& e) {
    // Asio's error derives from std::runtime_error, not std::system_error: callers get the
    // errno as a std::system_error so they can tell "address in use" from the rest.
    throw std::system_error(e.code().value(), std::system_category(), addr.str());
  }
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
