#pragma once
// List + watch of one API resource (client-go's reflector), delivering to an EventSink only what
// really changed.
//
// - List in pages (limit + continue; an expired continue token restarts the list), then watch
//   from the list's resourceVersion with bookmarks and a random timeoutSeconds in
//   [minWatchTimeout, maxWatchTimeout]. A watch that ends (timeout, dropped connection) resumes
//   from the last resourceVersion seen, bookmarks included.
// - 410 (HTTP status, or an ERROR event with code 410 / reason Expired or Gone) means that
//   resourceVersion is gone: list again and deliver only the difference with what is known, in
//   one sink batch: upserts for new and changed objects, deletes for the vanished ones, nothing
//   for unchanged ones (sameContent).
// - Failures (no connection, TLS refused, 401/403/5xx, malformed stream) wait an exponential
//   backoff with jitter and retry; nothing is ever deleted because the server is unreachable.
//   The backoff starts over after a complete list or a watch's first good event.
// - One object that fails to decode is reported (sink.rejected) and skipped; its previous good
//   version, if any, stays in effect. A stream that is not JSON ends the watch (backoff, resume).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "proxier/events.h"
#include "slice-watch/api_resources.h"
#include "slice-watch/backoff.h"
#include "slice-watch/decoded_object.h"
#include "slice-watch/http_transport.h"

namespace sliceproxy::slicewatch {

struct ReflectorOptions {
  size_t pageSize = 500;
  std::chrono::seconds minWatchTimeout{300};
  std::chrono::seconds maxWatchTimeout{600};
  std::chrono::seconds requestTimeout{60};  // one list page, headers and body
  std::chrono::seconds watchGrace{30};      // past timeoutSeconds before giving up on a watch
  // A watch that lasted this long, or delivered an event, proves the connection works: when it
  // ends the next attempt starts at once and the backoff starts over.
  std::chrono::seconds healthyWatch{10};
  BackoffPolicy backoff;
  std::string origin;    // for Rejections and logs, e.g. "https://10.0.0.1:6443"
  std::string authHint;  // appended to 401 errors: where the credentials came from
};

class Reflector {
 public:
  using Clock = std::chrono::steady_clock;

  // onFirstList runs once, on the reflector's thread, after the first complete list was
  // delivered.
  Reflector(ResourceSpec resource, ReflectorOptions opts, HttpTransport& transport,
            proxier::EventSink& sink, std::function<void()> onFirstList);

  // Lists and watches until stop(). Call on a thread of its own.
  void run();
  // From any thread; run() returns soon after.
  void stop();

  struct Status {
    bool listed = false;              // the first list was delivered
    bool watching = false;            // a watch is established right now
    Clock::time_point lastContact{};  // the last byte received from the server
    uint64_t lists = 0;               // complete lists delivered (1 + relists)
    uint64_t watches = 0;             // watches established
    std::string resourceVersion;
  };
  Status status() const;
  const ResourceSpec& resource() const { return resource_; }

 private:
  enum class WatchEnd { Expired, Ended, Failed };
  using Known = std::unordered_map<proxier::ObjectKey, DecodedObject, proxier::ObjectKeyHash>;

  void list();
  WatchEnd watch();
  // Handles one event line; true when it says "resourceVersion expired".
  bool handleLine(std::string& line);
  void sleepFor(std::chrono::milliseconds d);
  void touch();
  void failed(const std::string& what);
  void contactRestored();
  std::string statusError(int status, const std::string& body);
  std::string label() const;

  const ResourceSpec resource_;
  const ReflectorOptions opts_;
  HttpTransport& transport_;
  proxier::EventSink& sink_;
  std::function<void()> onFirstList_;
  DecodeOptions decodeOpts_;
  Backoff backoff_;

  // Owned by the run() thread.
  Known known_;
  std::string rv_;
  int expiredInARow_ = 0;
  std::optional<Clock::time_point> failingSince_;

  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status status_;
};

}  // namespace sliceproxy::slicewatch
