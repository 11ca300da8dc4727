#include "slice-watch/api_source.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "slice-watch/beast_transport.h"
#include "slice-watch/event_recorder.h"

namespace sliceproxy::slicewatch {

ApiSource::ApiSource(ApiConfig cfg, ApiSourceOptions opts, proxier::EventSink& sink)
    : cfg_(std::move(cfg)), sink_(sink) {
  std::shared_ptr<ExecCredentialSource> exec;
  if (cfg_.exec) exec = std::make_shared<ExecCredentialSource>(*cfg_.exec);
  token_ = std::make_shared<BearerToken>(cfg_.token, cfg_.tokenFile, opts.tokenRefresh, exec);
  token_->load();  // a missing token file or a failing plugin is a configuration error: say so
  if (cfg_.server.tls) tls_ = std::make_shared<TlsMaterialSource>(cfg_, exec, opts.tlsRefresh);
  if (!cfg_.server.tls) {
    spdlog::warn("{}: the API server {} is reached over plain HTTP, without TLS", cfg_.origin,
                 cfg_.server.str());
  } else if (cfg_.insecureSkipTlsVerify) {
    spdlog::warn(
        "{}: insecure-skip-tls-verify is set: the API server's certificate is NOT "
        "verified, anyone on the path can impersonate it",
        cfg_.origin);
  }
  if (!cfg_.hasCredentials()) {
    spdlog::warn("{}: no token, token file or client certificate: requests are anonymous",
                 cfg_.origin);
  }

  ReflectorOptions ropts = opts.reflector;
  ropts.origin = cfg_.server.str();
  if (ropts.authHint.empty()) {
    ropts.authHint = cfg_.exec ? fmt::format("{} (exec plugin {})", cfg_.origin, cfg_.exec->command)
                     : cfg_.tokenFile.empty()
                         ? cfg_.origin
                         : fmt::format("{} (token file {})", cfg_.origin, cfg_.tokenFile);
  }
  std::vector<ResourceSpec> resources{servicesResource(opts.serviceProxyName),
                                      endpointSlicesResource(opts.serviceProxyName),
                                      nodeResource(opts.nodeName)};
  for (auto& r : resources) {
    transports_.push_back(std::make_unique<BeastTransport>(cfg_, token_, "sliceproxy", tls_));
    reflectors_.push_back(
        std::make_unique<Reflector>(std::move(r), ropts, *transports_.back(), sink_, [this] {
          if (++listed_ == static_cast<int>(reflectors_.size())) {
            spdlog::info("{}: Services, EndpointSlices and this Node listed: synced",
                         cfg_.server.str());
            sink_.synced();
          }
        }));
  }
}

std::unique_ptr<proxier::ObjectEvents> ApiSource::makeEventRecorder(const std::string& nodeName) {
  return std::make_unique<EventRecorder>(
      std::make_unique<BeastTransport>(cfg_, token_, "sliceproxy", tls_), nodeName);
}

ApiSource::~ApiSource() {
  stop();
}

void ApiSource::start() {
  if (started_) throw std::logic_error("ApiSource::start called twice");
  started_ = true;
  spdlog::info("watching the Kubernetes API at {} ({})", cfg_.server.str(), cfg_.origin);
  for (auto& r : reflectors_) threads_.emplace_back([&r] { r->run(); });
}

void ApiSource::stop() {
  for (auto& r : reflectors_) r->stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

std::string ApiSource::describe() const {
  return fmt::format("Kubernetes API {} ({})", cfg_.server.str(), cfg_.origin);
}

bool ApiSource::synced() const {
  return listed_ == static_cast<int>(reflectors_.size());
}

bool ApiSource::connected() const {
  for (const auto& r : reflectors_) {
    if (!r->status().watching) return false;
  }
  return true;
}

ApiSource::Clock::time_point ApiSource::lastSuccessfulContact() const {
  auto now = Clock::now();
  auto oldest = now;
  for (const auto& r : reflectors_) {
    auto s = r->status();
    oldest = std::min(oldest, s.watching ? now : s.lastContact);
  }
  return oldest;
}

std::vector<Reflector::Status> ApiSource::status() const {
  std::vector<Reflector::Status> out;
  for (const auto& r : reflectors_) out.push_back(r->status());
  return out;
}

proxier::SourceHealth ApiSource::health() const {
  proxier::SourceHealth h{describe(), connected(), -1, -1, {}};
  const auto last = lastSuccessfulContact();
  const auto now = Clock::now();
  if (last != Clock::time_point{}) {
    h.secondsSinceContact = std::chrono::duration<double>(now - last).count();
  }
  for (const auto& r : reflectors_) {
    const double behind = std::chrono::duration<double>(now - r->status().lastProgress).count();
    if (behind > h.secondsWithoutProgress) {
      h.secondsWithoutProgress = behind;
      h.lagging = r->label();
    }
  }
  return h;
}

}  // namespace sliceproxy::slicewatch
