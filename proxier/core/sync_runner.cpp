#include "proxier/core/sync_runner.h"

#include <spdlog/spdlog.h>

namespace sliceproxy::proxier {

SyncRunner::SyncRunner(Options opts, std::function<bool()> fn)
    : opts_(opts),
      fn_(std::move(fn)),
      schedule_(opts.minInterval, opts.burst, opts.maxInterval, SyncSchedule::Clock::now()) {}

SyncRunner::~SyncRunner() {
  stop();
}

void SyncRunner::start() {
  thread_ = std::thread([this] { loop(); });
}

void SyncRunner::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SyncRunner::run() {
  {
    std::lock_guard lock(mu_);
    schedule_.request();
  }
  cv_.notify_all();
}

void SyncRunner::loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto now = SyncSchedule::Clock::now();
    auto next = schedule_.nextRun(now);
    if (next > now) {
      cv_.wait_until(lock, next);
      continue;
    }
    schedule_.started(now);
    lock.unlock();
    const bool ok = fn_();
    lock.lock();
    if (!ok) {
      // As kube-proxy: the failed sync is tried again after the sync period (sooner if a change
      // comes), and the proxier makes that attempt a full sync.
      spdlog::info("retrying the failed sync within {:.1f} s",
                   std::chrono::duration<double>(opts_.retryInterval).count());
      schedule_.retryAfter(SyncSchedule::Clock::now(), opts_.retryInterval);
    }
  }
}

}  // namespace sliceproxy::proxier
