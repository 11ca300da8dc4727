#pragma once
// List + watch of one API resource (client-go's reflector), delivering to an EventSink only what
// really changed.
//
// - List in pages (limit + continue; an expired continue token restarts the list), then watch
//   from the list's resourceVersion with bookmarks and a random timeoutSeconds in
//   [minWatchTimeout, maxWatchTimeout]. A watch that ends (timeout, dropped connection) resumes
//   from the last resourceVersion seen, bookmarks included.
// - A watch the server cannot resume from our resourceVersion means a new list, which reads
//   without one (resourceVersion="", a consistent read from etcd, what client-go falls back to
//   after these errors), then a watch from the list's resourceVersion: 410 Expired/Gone (HTTP
//   status or ERROR event: compacted), 504 "Too large resource version" (an etcd restore, a
//   lagging replica), 400 (a resourceVersion it cannot parse). The relist delivers only the
//   difference with what is known, in one sink batch: upserts for new and changed objects,
//   deletes for the vanished ones, nothing for unchanged ones (sameContent).
// - Failures wait an exponential backoff with jitter and retry; nothing is ever deleted because
//   the server is unreachable. A connection that fails (refused, reset, timed out) or a 429
//   resumes the watch from where it was, however long it lasts, so an API server restart costs
//   no relist. A server that answers but fails the watch (5xx, an ERROR event, a malformed or
//   instantly ending stream) kRelistAfterWatchErrors times in a row gets a relist.
// - Progress (a complete list, a watch event or bookmark, a watch that stayed up healthyWatch)
//   starts the backoff over: the next failure waits the initial delay. Relists that lead to no
//   watch progress (a server that expires every fresh resourceVersion) wait a backoff of their
//   own, so the whole cluster is not listed in a loop.
// - One object that fails to decode is reported (sink.rejected) and skipped; its previous good
//   version, if any, stays in effect.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "proxier/core/events.h"
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
    // The last progress: a complete list, a watch event or bookmark, or now while a watch has
    // been established for healthyWatch. A source stuck behind failures falls behind this.
    Clock::time_point lastProgress{};
  };
  Status status() const;
  const ResourceSpec& resource() const { return resource_; }
  // "Services", "Node metadata.name=n1": for logs and health.
  std::string label() const;

 private:
  static constexpr int kRelistAfterWatchErrors = 3;
  // Ended: the watch ended normally and resumes. Relist: our resourceVersion cannot be
  // resumed from. Failed: the server answered but the watch did not work.
  enum class WatchEnd { Ended, Relist, Failed };
  using Known = std::unordered_map<proxier::ObjectKey, DecodedObject, proxier::ObjectKeyHash>;

  void list();
  WatchEnd watch();
  // Handles one event line; true when it says the watch cannot resume: relist.
  bool handleLine(std::string& line);
  void sleepFor(std::chrono::milliseconds d);
  void touch();
  void failed(const std::string& what, std::chrono::seconds retryAfter = std::chrono::seconds(0));
  void watchFailed(const std::string& what);
  // After a complete list (byWatch false) or an event, bookmark or long-lived watch.
  void progressed(bool byWatch);
  void pauseBeforeRelist(bool afterFailure);
  void contactRestored();
  std::string statusError(int status, const std::string& body);

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
  bool needList_ = true;
  int watchErrors_ = 0;                   // watch failures since the last progress
  bool listedSinceWatchProgress_ = true;  // a list happened and no watch progressed since
  Backoff relistBackoff_;
  std::optional<Clock::time_point> failingSince_;
  Clock::time_point watchingSince_{};

  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status status_;
};

}  // namespace sliceproxy::slicewatch
