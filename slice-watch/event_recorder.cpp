#include "slice-watch/event_recorder.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>

namespace sliceproxy::slicewatch {

namespace json = boost::json;

EventRecorder::EventRecorder(std::unique_ptr<HttpTransport> transport, std::string nodeName)
    : transport_(std::move(transport)), nodeName_(std::move(nodeName)) {
  thread_ = std::thread([this] { run(); });
}

EventRecorder::~EventRecorder() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  transport_->cancel();
  thread_.join();
}

void EventRecorder::serviceWarning(const proxier::ObjectKey& service, std::string_view reason,
                                   std::string note) {
  const auto now = std::chrono::steady_clock::now();
  std::string dedupe = fmt::format("{}\n{}\n{}", service.str(), reason, note);
  {
    std::lock_guard lock(mu_);
    auto it = sent_.find(dedupe);
    if (it != sent_.end() && now - it->second < kRepeatAfter) return;
    if (queue_.size() >= kMaxQueued) {
      if (dropped_++ == 0) {
        spdlog::warn(
            "events: more than {} queued for the API server; dropping the rest "
            "(they are in this log)",
            kMaxQueued);
      }
      return;
    }
    // Forget old entries so the map stays as small as the set of current problems.
    std::erase_if(sent_, [&](const auto& e) { return now - e.second >= kRepeatAfter; });
    sent_[dedupe] = now;
    queue_.push_back(
        {service, std::string(reason), std::move(note), std::chrono::system_clock::now()});
  }
  cv_.notify_one();
}

std::string EventRecorder::eventJson(const proxier::ObjectKey& service, std::string_view reason,
                                     const std::string& note, const std::string& nodeName,
                                     std::chrono::system_clock::time_point when) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(when.time_since_epoch()).count();
  const auto nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  // MicroTime: RFC 3339 with six fractional digits, UTC.
  std::string eventTime =
      fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06}Z",
                  std::chrono::time_point_cast<std::chrono::seconds>(when), micros % 1000000);
  // The API server caps a note at 1 KiB.
  std::string shortNote = note.size() > 1024 ? note.substr(0, 1021) + "..." : note;
  json::object ev{
      {"apiVersion", "events.k8s.io/v1"},
      {"kind", "Event"},
      {"metadata", json::object{{"name", fmt::format("{}.{:x}", service.name, nanos)},
                                {"namespace", service.ns}}},
      {"eventTime", eventTime},
      {"reportingController", "sliceproxy"},
      {"reportingInstance", "sliceproxy-" + nodeName},
      {"action", "Programming"},
      {"reason", std::string(reason)},
      {"type", "Warning"},
      {"note", shortNote},
      {"regarding", json::object{{"apiVersion", "v1"},
                                 {"kind", "Service"},
                                 {"namespace", service.ns},
                                 {"name", service.name}}},
  };
  return json::serialize(ev);
}

void EventRecorder::run() {
  for (;;) {
    Pending p;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      p = std::move(queue_.front());
      queue_.pop_front();
    }
    std::string target = fmt::format("/apis/events.k8s.io/v1/namespaces/{}/events", p.service.ns);
    try {
      auto resp =
          transport_->post(target, eventJson(p.service, p.reason, p.note, nodeName_, p.when),
                           std::chrono::seconds(10));
      int status = resp->status();
      readAll(*resp);
      if (status == 401) transport_->credentialsRejected();
      if (status / 100 != 2) throw TransportError(fmt::format("HTTP {}", status));
      if (failing_) spdlog::info("events: the API server takes events again");
      failing_ = false;
    } catch (const Cancelled&) {
      return;
    } catch (const std::exception& e) {
      if (!failing_) {
        spdlog::warn(
            "events: cannot write a {} event for Service {} ({}); events are dropped "
            "while this lasts (the log has them)",
            p.reason, p.service.str(), e.what());
      }
      failing_ = true;
    }
  }
}

}  // namespace sliceproxy::slicewatch
