#pragma once
// A small HTTP/1.1 server (Boost.Beast over Asio) for health, metrics and debug endpoints and
// the healthCheckNodePort listeners. One io_context with a couple of threads serves every
// listener; handlers run on those threads and must be quick.

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sliceproxy::proxier {

struct HttpRequest {
  std::string method;  // GET, HEAD, ...
  std::string target;  // path and query, as sent
  std::string path() const { return target.substr(0, target.find('?')); }
  // Value of one query parameter, or nullopt (no URL decoding beyond %XX and '+').
  std::optional<std::string> query(std::string_view name) const;
};

struct HttpResponse {
  unsigned status = 200;
  std::string contentType = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// host:port as kube-proxy spells bind addresses: 0.0.0.0:10256, [::1]:10249, :10256 (= every
// address). Returns nullopt and sets error when the text is not one.
struct HostPort {
  std::string host;  // literal IP; "" means 0.0.0.0
  uint16_t port = 0;
  std::string str() const;
};
std::optional<HostPort> parseHostPort(std::string_view text, std::string& error);

// A blocking GET to 127.0.0.1:port (the CLI asking the daemon). Returns the status, or 0 with
// error set when the daemon could not be reached.
unsigned httpGetLoopback(uint16_t port, const std::string& target, std::string& body,
                         std::string& error);

class HttpServer {
 public:
  explicit HttpServer(int threads = 2);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving; returns a listener id. Throws std::system_error (with the errno)
  // when the address cannot be bound. May be called from any thread, before or after start().
  // Each listener holds at most 64 connections (a new one closes the oldest), gives a client
  // 5 s to send a request and 10 s to take the answer, and backs off when the process runs out
  // of descriptors.
  int listen(const HostPort& addr, HttpHandler handler);
  // The port a listener is bound to (useful with port 0).
  uint16_t boundPort(int id) const;
  void close(int id);
  void start();
  void stop();

 private:
  class Listener;
  boost::asio::io_context ioc_;
  int threads_;
  std::vector<std::thread> pool_;
  mutable std::mutex mu_;
  int nextId_ = 1;
  std::map<int, std::shared_ptr<Listener>> listeners_;
  bool started_ = false;
};

}  // namespace sliceproxy::proxier
