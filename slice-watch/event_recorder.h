#pragma once
// Writes Warning Events (events.k8s.io/v1) about Services to the API server, as kube-proxy's
// event recorder does, so that `kubectl describe service` shows what this node's log says.
// Never in the way of the data plane: serviceWarning() only queues; one thread posts. The same
// event (Service, reason, note) is sent at most once per kRepeatAfter, the queue is bounded
// (events beyond it are dropped and counted in the log), and a failed post is dropped after
// one log line per failure streak.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "proxier/core/object_events.h"
#include "slice-watch/api_config.h"
#include "slice-watch/credentials.h"
#include "slice-watch/http_transport.h"

namespace sliceproxy::slicewatch {

class EventRecorder : public proxier::ObjectEvents {
 public:
  static constexpr std::chrono::minutes kRepeatAfter{10};
  static constexpr size_t kMaxQueued = 64;

  EventRecorder(std::unique_ptr<HttpTransport> transport, std::string nodeName);
  ~EventRecorder() override;  // stops; queued events are dropped
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  void serviceWarning(const proxier::ObjectKey& service, std::string_view reason,
                      std::string note) override;

  // The request body for one event, for tests.
  static std::string eventJson(const proxier::ObjectKey& service, std::string_view reason,
                               const std::string& note, const std::string& nodeName,
                               std::chrono::system_clock::time_point when);

 private:
  struct Pending {
    proxier::ObjectKey service;
    std::string reason, note;
    std::chrono::system_clock::time_point when;
  };
  void run();

  std::unique_ptr<HttpTransport> transport_;
  std::string nodeName_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::map<std::string, std::chrono::steady_clock::time_point> sent_;  // dedupe key -> when
  size_t dropped_ = 0;
  bool stopping_ = false;
  bool failing_ = false;  // touched by the thread only
  std::thread thread_;
};

}  // namespace sliceproxy::slicewatch
