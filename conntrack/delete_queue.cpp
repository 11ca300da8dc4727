#include "conntrack/delete_queue.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

namespace sliceproxy::conntrack {

void DeleteQueue::add(const Flow& f, const FlowSelector* why, StaleReason reason) {
  items_.push_back(Item{f, why, reason});
  if (items_.size() >= CtSocket::kMaxBatch) flush();
}

std::string DeleteQueue::describe(const Item& item) const {
  return fmt::format(
      "{}: {}", item.flow.str(),
      item.why ? item.why->str() : fmt::format("{} (reconcile)", reasonName(item.reason)));
}

void DeleteQueue::flush() {
  if (items_.empty()) return;
  std::vector<const Flow*> flows;
  flows.reserve(items_.size());
  for (const auto& i : items_) flows.push_back(&i.flow);
  std::vector<int> results;
  const auto start = std::chrono::steady_clock::now();
  const int batchErr = socket_.deleteFlows(flows, results);
  result_.deleting += std::chrono::steady_clock::now() - start;
  if (batchErr) {
    spdlog::warn("conntrack: a batch of {} deletes failed: {}", items_.size(),
                 std::strerror(batchErr));
  }
  for (size_t i = 0; i < items_.size(); ++i) {
    const int err = i < results.size() ? results[i] : batchErr;
    if (err == 0) {
      ++result_.deleted;
      if (spdlog::should_log(spdlog::level::debug)) {
        spdlog::debug("conntrack: deleted {}", describe(items_[i]));
      }
    } else if (err == ENOENT) {
      ++result_.vanished;
    } else {
      ++result_.errors;
      if (items_[i].why && retried_.insert(items_[i].why).second) {
        result_.retry.push_back(*items_[i].why);
      }
      if (loggedErrors_++ < maxLoggedErrors_) {
        spdlog::warn("conntrack: cannot delete {}: {}", describe(items_[i]), std::strerror(err));
      }
    }
  }
  items_.clear();
}

}  // namespace sliceproxy::conntrack
