#pragma once
// A source of Service, EndpointSlice and Node events. start() delivers the initial state and
// calls EventSink::synced(), then follows changes on threads of its own until stop().

#include <memory>
#include <string>

#include "proxier/core/events.h"
#include "proxier/core/object_events.h"

namespace sliceproxy::slicewatch {

class Source {
 public:
  virtual ~Source() = default;
  // Throws std::exception with a message naming what could not be reached or read.
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual std::string describe() const = 0;
  // Freshness for /healthz; a local directory is always current.
  virtual proxier::SourceHealth health() const { return {describe(), true, -1, -1, {}}; }
  // Where Warning events about Services can be written (the API); null when nowhere.
  virtual std::unique_ptr<proxier::ObjectEvents> makeEventRecorder(const std::string& nodeName) {
    (void)nodeName;
    return nullptr;
  }
};

struct SourceOptions {
  std::string sourceDir;                        // --source-dir: a manifest directory
  std::string kubeconfig;                       // --kubeconfig
  std::string master;                           // --master: overrides the kubeconfig's server
  std::string nodeName;                         // this node: its Node object is watched
  std::string serviceProxyName;                 // --service-proxy-name: narrows the label selector
  uint64_t manifestMaxFileBytes = 64ull << 20;  // --manifest-max-file-bytes
};

// The manifest directory when --source-dir is set, else the Kubernetes API. Null with `error`
// set when neither can be built.
std::unique_ptr<Source> makeSource(const SourceOptions& opts, proxier::EventSink& sink,
                                   std::string& error);

}  // namespace sliceproxy::slicewatch
