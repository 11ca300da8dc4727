#include "conntrack/stale_flow_cleaner.h"

namespace sliceproxy::conntrack {

CleanResult& CleanResult::operator+=(const CleanResult& o) {
  deleted += o.deleted;
  vanished += o.vanished;
  errors += o.errors;
  examined += o.examined;
  dumps += o.dumps;
  recordLookups += o.recordLookups;
  took += o.took;
  deleting += o.deleting;
  retry.insert(retry.end(), o.retry.begin(), o.retry.end());
  return *this;
}

void CleanerCounters::add(const CleanResult& r) {
  deleted.fetch_add(r.deleted, std::memory_order_relaxed);
  vanished.fetch_add(r.vanished, std::memory_order_relaxed);
  errors.fetch_add(r.errors, std::memory_order_relaxed);
  examined.fetch_add(r.examined, std::memory_order_relaxed);
  dumps.fetch_add(r.dumps, std::memory_order_relaxed);
}

}  // namespace sliceproxy::conntrack
