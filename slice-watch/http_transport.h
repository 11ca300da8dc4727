#pragma once
// One HTTP/1.1 connection to the API server as a watch loop needs it: send a GET, get the
// status, then read the body piece by piece as it arrives (a list page at once, a watch stream
// for minutes). An interface so the list/watch logic can be tested against scripted responses.

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

namespace sliceproxy::slicewatch {

// The connection failed: refused, reset, timed out, TLS handshake refused, truncated body.
class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// cancel() was called: the owner is shutting down.
class Cancelled : public std::exception {
 public:
  const char* what() const noexcept override { return "cancelled"; }
};

class HttpResponse {
 public:
  virtual ~HttpResponse() = default;
  int status() const { return status_; }
  // The Retry-After header as a number of seconds (429, 503); 0 when absent or an HTTP date.
  std::chrono::seconds retryAfter() const { return retryAfter_; }
  // Appends the next piece of the body to `out` (waiting for it); false once the body is
  // complete. Throws TransportError or Cancelled.
  virtual bool read(std::string& out) = 0;

 protected:
  int status_ = 0;
  std::chrono::seconds retryAfter_{0};
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Sends GET `target` (path and query) and returns once the response header is in; the whole
  // exchange, body included, must finish within `timeout`. At most one response is in use at a
  // time: the previous one must have been destroyed. Throws TransportError or Cancelled.
  virtual std::unique_ptr<HttpResponse> get(const std::string& target,
                                            std::chrono::seconds timeout) = 0;
  // Sends POST `target` with a JSON body, otherwise as get(). Transports that only read (test
  // fakes) refuse it.
  virtual std::unique_ptr<HttpResponse> post(const std::string& target, const std::string& json,
                                             std::chrono::seconds timeout) {
    (void)target, (void)json, (void)timeout;
    throw TransportError("this transport cannot send POST requests");
  }
  // From any thread: the call in progress and every later one throw Cancelled.
  virtual void cancel() = 0;
  // Called after a 401: credentials that can be refreshed are read again.
  virtual void credentialsRejected() {}
};

// Reads a whole body; throws like HttpResponse::read.
std::string readAll(HttpResponse& response);

}  // namespace sliceproxy::slicewatch
