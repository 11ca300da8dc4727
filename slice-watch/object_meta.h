#pragma once
// Internal to the decoders: the metadata fields shared by every kind.

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
};

// Decodes metadata.{name,namespace,resourceVersion,labels,deletionTimestamp}; the caller has
// already pushed "metadata" on the path.
void decodeObjectMeta(Reader& r, od::value& v, ObjectMeta& meta);

}  // namespace sliceproxy::slicewatch::detail
