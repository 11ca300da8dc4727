#pragma once
// Kubernetes Events about the objects the proxier reads, for what an operator must see on the
// object itself (`kubectl describe service`), not only in this node's log: a Service that lost
// a frontend to another. The source that can write them (the API) provides the implementation;
// without one (a manifest directory) the log line is all there is.

#include <string>
#include <string_view>

#include "proxier/model/object_key.h"

namespace sliceproxy::proxier {

class ObjectEvents {
 public:
  virtual ~ObjectEvents() = default;
  // A Warning event regarding the Service `service`. Must not block: called on the sync thread.
  virtual void serviceWarning(const ObjectKey& service, std::string_view reason,
                              std::string note) = 0;
};

}  // namespace sliceproxy::proxier
