#pragma once
// Internal to the decoders: the metadata fields shared by every kind.

#include <chrono>
#include <optional>
#include <string>

#include "proxier/model/labels.h"
#include "slice-watch/json_reader.h"

namespace sliceproxy::slicewatch::detail {

struct ObjectMeta {
  std::string name;
  std::string ns;
  std::string resourceVersion;
  proxier::Labels labels;
  bool deletionTimestampSet = false;
  // Absent or unparseable: unset (manifests rarely carry it).
  std::optional<std::chrono::system_clock::time_point> creationTimestamp;
  // annotations[endpoints.kubernetes.io/last-change-trigger-time], when present and valid.
  std::optional<std::chrono::system_clock::time_point> lastChangeTriggerTime;
};

// Decodes metadata.{name,namespace,resourceVersion,labels,deletionTimestamp} and the one
// annotation the proxy reads (the others are skipped unread); the caller has
// already pushed "metadata" on the path.
void decodeObjectMeta(Reader& r, od::value& v, ObjectMeta& meta);

}  // namespace sliceproxy::slicewatch::detail
