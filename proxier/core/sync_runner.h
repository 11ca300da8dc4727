#pragma once
// Runs the sync function on its own thread whenever SyncSchedule says so.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "proxier/core/sync_schedule.h"

namespace sliceproxy::proxier {

class SyncRunner {
 public:
  struct Options {
    SyncSchedule::Duration minInterval = std::chrono::seconds(1);
    int burst = 2;
    SyncSchedule::Duration maxInterval = std::chrono::hours(1);
    SyncSchedule::Duration retryInterval = std::chrono::seconds(30);
  };
  // fn returns false when the sync failed and must be retried.
  SyncRunner(Options opts, std::function<bool()> fn);
  ~SyncRunner();

  void start();
  void stop();
  // Asks for a sync; bursts of requests coalesce into one run.
  void run();

 private:
  void loop();

  Options opts_;
  std::function<bool()> fn_;
  std::mutex mu_;
  std::condition_variable cv_;
  SyncSchedule schedule_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sliceproxy::proxier
