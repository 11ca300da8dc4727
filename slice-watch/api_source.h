#pragma once
// The Kubernetes API as a Source: three list+watch loops (Services and EndpointSlices
// cluster-wide with kube-proxy's label selector, this node's Node), each on a thread and a
// connection of its own, sharing one bearer token.
//
// The sink sees synced() once, when all three initial lists have been delivered. While the API
// server is unreachable nothing is delivered (the data plane keeps its last good state); the
// health accessors below tell how stale that state may be.

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "slice-watch/api_config.h"
#include "slice-watch/credentials.h"
#include "slice-watch/http_transport.h"
#include "slice-watch/reflector.h"
#include "slice-watch/source.h"
#include "slice-watch/tls_material.h"

namespace sliceproxy::slicewatch {

struct ApiSourceOptions {
  std::string nodeName;
  std::string serviceProxyName;
  ReflectorOptions reflector;
  std::chrono::seconds tokenRefresh{60};
  // How often the CA and client certificate files are checked for a change (stat only).
  std::chrono::seconds tlsRefresh{10};
};

class ApiSource : public Source {
 public:
  using Clock = std::chrono::steady_clock;

  // Reads the token file and loads the TLS material now. Throws std::runtime_error naming what
  // cannot be used.
  ApiSource(ApiConfig cfg, ApiSourceOptions opts, proxier::EventSink& sink);
  ~ApiSource() override;  // stops

  // Starts the three watches and returns at once; synced() follows when the lists are in.
  void start() override;
  void stop() override;
  std::string describe() const override;
  proxier::SourceHealth health() const override;
  std::unique_ptr<proxier::ObjectEvents> makeEventRecorder(const std::string& nodeName) override;

  // For a health endpoint. synced: every initial list delivered. connected: every watch is
  // established right now. lastSuccessfulContact: how fresh the state is, the oldest of the
  // three (an established watch counts as now); the epoch before any contact.
  bool synced() const;
  bool connected() const;
  Clock::time_point lastSuccessfulContact() const;
  std::vector<Reflector::Status> status() const;

 private:
  ApiConfig cfg_;
  proxier::EventSink& sink_;
  std::shared_ptr<BearerToken> token_;
  std::shared_ptr<TlsMaterialSource> tls_;  // shared by the transports
  std::vector<std::unique_ptr<HttpTransport>> transports_;
  std::vector<std::unique_ptr<Reflector>> reflectors_;
  std::vector<std::thread> threads_;
  std::atomic<int> listed_{0};
  bool started_ = false;
};

}  // namespace sliceproxy::slicewatch
