#include "slice-watch/reflector.h"

#include <fmt/format.h>
#include <malloc.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <random>
#include <unordered_set>

#include "slice-watch/api_status.h"
#include "slice-watch/list_page.h"
#include "slice-watch/watch_event.h"
#include "slice-watch/watch_stream.h"

namespace sliceproxy::slicewatch {

namespace {

// A failure the reflector recovers from by backing off and trying again; not before
// `retryAfter` when the server said so (429, 503 with Retry-After).
class RetryableError : public std::runtime_error {
 public:
  explicit RetryableError(const std::string& what,
                          std::chrono::seconds retryAfter = std::chrono::seconds(0))
      : std::runtime_error(what), retryAfter_(retryAfter) {}
  std::chrono::seconds retryAfter() const { return retryAfter_; }

 private:
  std::chrono::seconds retryAfter_;
};

// A Retry-After beyond this is taken as this: a wrong header must not stall the node for hours.
constexpr std::chrono::seconds kMaxRetryAfter{120};

// The server answered a watch, but with an error: counts towards a relist.
class WatchError : public RetryableError {
 public:
  using RetryableError::RetryableError;
};

std::string secondsText(Reflector::Clock::duration d) {
  return fmt::format("{:.1f}s", std::chrono::duration<double>(d).count());
}

std::optional<proxier::ObjectKey> keyOfRejection(const proxier::Rejection& r, bool namespaced) {
  if (r.object.empty()) return std::nullopt;
  auto slash = r.object.find('/');
  if (!namespaced || slash == std::string::npos) return proxier::ObjectKey{"", r.object};
  return proxier::ObjectKey{r.object.substr(0, slash), r.object.substr(slash + 1)};
}

constexpr size_t kTrimAfterBytes = 4 << 20;

}  // namespace

Reflector::Reflector(ResourceSpec resource, ReflectorOptions opts, HttpTransport& transport,
                     proxier::EventSink& sink, std::function<void()> onFirstList)
    : resource_(std::move(resource)),
      opts_(std::move(opts)),
      transport_(transport),
      sink_(sink),
      onFirstList_(std::move(onFirstList)),
      decodeOpts_{opts_.origin + resource_.path},
      backoff_(opts_.backoff),
      relistBackoff_(opts_.backoff) {
  status_.lastProgress = Clock::now();
}

std::string Reflector::label() const {
  if (!resource_.fieldSelector.empty()) return resource_.kind + " " + resource_.fieldSelector;
  return resource_.kind + "s";
}

Reflector::Status Reflector::status() const {
  const auto now = Clock::now();
  std::lock_guard lock(mu_);
  Status s = status_;
  // An idle cluster sends nothing for minutes: a watch that stays up is progress.
  if (s.watching && now - watchingSince_ >= opts_.healthyWatch) s.lastProgress = now;
  return s;
}

void Reflector::stop() {
  stopping_ = true;
  { std::lock_guard lock(mu_); }
  cv_.notify_all();
  transport_.cancel();
}

void Reflector::sleepFor(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [&] { return stopping_.load(); });
}

void Reflector::touch() {
  std::lock_guard lock(mu_);
  status_.lastContact = Clock::now();
}

void Reflector::failed(const std::string& what, std::chrono::seconds retryAfter) {
  if (!failingSince_) failingSince_ = Clock::now();
  auto delay = backoff_.next();
  const auto asked = std::min(retryAfter, kMaxRetryAfter);
  if (asked > delay) delay = std::chrono::duration_cast<std::chrono::milliseconds>(asked);
  spdlog::warn("{}: {}; retrying in {}{} (last good state kept)", label(), what, secondsText(delay),
               retryAfter.count() ? ", as the server's Retry-After asks" : "");
  sleepFor(delay);
}

void Reflector::contactRestored() {
  if (!failingSince_) return;
  spdlog::info("{}: in contact with the API server again after {}", label(),
               secondsText(Clock::now() - *failingSince_));
  failingSince_.reset();
}

std::string Reflector::statusError(int status, const std::string& body) {
  std::string msg = parseStatusBody(status, body).message;
  switch (status) {
    case 401:
      transport_.credentialsRejected();
      return fmt::format("401 Unauthorized: the API server refused our credentials{}{}: {}",
                         opts_.authHint.empty() ? "" : " from ", opts_.authHint, msg);
    case 403:
      return fmt::format("403 Forbidden: our credentials may not list and watch {} (RBAC): {}",
                         resource_.path, msg);
    default:
      return fmt::format("HTTP {} from {}: {}", status, resource_.path, msg);
  }
}

void Reflector::progressed(bool byWatch) {
  backoff_.reset();
  watchErrors_ = 0;
  if (byWatch) {
    relistBackoff_.reset();
    listedSinceWatchProgress_ = false;
  } else {
    listedSinceWatchProgress_ = true;
  }
  std::lock_guard lock(mu_);
  status_.lastProgress = Clock::now();
}

void Reflector::watchFailed(const std::string& what) {
  if (++watchErrors_ < kRelistAfterWatchErrors) return failed(what);
  spdlog::warn("{}: {}; the watch failed {} times in a row, listing again", label(), what,
               watchErrors_);
  watchErrors_ = 0;
  if (!failingSince_) failingSince_ = Clock::now();
  pauseBeforeRelist(true);
}

void Reflector::pauseBeforeRelist(bool afterFailure) {
  needList_ = true;
  std::chrono::milliseconds delay{0};
  if (listedSinceWatchProgress_) {
    // The last list led to no watch progress: a server that expires or refuses every fresh
    // resourceVersion must not have us listing the whole cluster in a loop.
    delay = relistBackoff_.next();
    spdlog::warn("{}: no watch worked since the last list; listing again in {}", label(),
                 secondsText(delay));
  } else if (afterFailure) {
    delay = backoff_.next();
  }
  sleepFor(delay);
}

void Reflector::run() {
  {
    std::lock_guard lock(mu_);
    status_.lastProgress = Clock::now();  // stuck is measured from the start
  }
  while (!stopping_) {
    try {
      if (needList_) {
        list();
        needList_ = false;
        progressed(false);
        contactRestored();
      }
      switch (watch()) {
        case WatchEnd::Ended:
          break;
        case WatchEnd::Relist:
          pauseBeforeRelist(false);
          break;
        case WatchEnd::Failed:
          watchFailed("the watch ended at once");
          break;
      }
    } catch (const Cancelled&) {
      break;
    } catch (const WatchError& e) {
      if (stopping_) break;
      watchFailed(e.what());
    } catch (const RetryableError& e) {
      if (stopping_) break;
      failed(e.what(), e.retryAfter());
    } catch (const std::exception& e) {
      // A list that failed, or a connection that did: try the same thing again.
      if (stopping_) break;
      failed(e.what());
    }
  }
}

void Reflector::list() {
  const auto started = Clock::now();
  std::vector<DecodedObject> fresh;
  std::unordered_map<proxier::ObjectKey, size_t, proxier::ObjectKeyHash> index;
  std::vector<proxier::Rejection> rejections;
  std::unordered_set<proxier::ObjectKey, proxier::ObjectKeyHash> rejectedKeys;
  std::string cont, rv;
  size_t pages = 0, bytes = 0;
  int restarts = 0;
  while (true) {
    auto resp = transport_.get(listTarget(resource_, opts_.pageSize, cont), opts_.requestTimeout);
    std::string body = readAll(*resp);
    bytes += body.size();
    touch();
    if (resp->status() == 410 && !cont.empty() && restarts < 3) {
      ++restarts;
      spdlog::info("{}: the list's continue token expired; listing again from the start", label());
      fresh.clear();
      index.clear();
      rejections.clear();
      rejectedKeys.clear();
      cont.clear();
      rv.clear();
      pages = 0;
      continue;
    }
    if (resp->status() != 200) {
      throw RetryableError("list: " + statusError(resp->status(), body), resp->retryAfter());
    }
    ListPage page = decodeListPage(body, resource_.kind, decodeOpts_);
    if (!page.error.empty()) {
      throw RetryableError(fmt::format("list of {}: {}", resource_.path, page.error));
    }
    for (auto& item : page.items) {
      if (auto* obj = std::get_if<DecodedObject>(&item)) {
        auto [it, inserted] = index.try_emplace(obj->key, fresh.size());
        if (inserted) {
          fresh.push_back(std::move(*obj));
        } else {
          fresh[it->second] = std::move(*obj);
        }
      } else {
        auto& rej = std::get<proxier::Rejection>(item);
        if (auto key = keyOfRejection(rej, resource_.namespaced)) rejectedKeys.insert(*key);
        rejections.push_back(std::move(rej));
      }
    }
    rv = std::move(page.resourceVersion);
    cont = std::move(page.continueToken);
    ++pages;
    if (cont.empty()) break;
  }

  // Deliver the difference with what is known, as one batch.
  size_t upserts = 0, deletes = 0, unchanged = 0;
  {
    proxier::BatchGuard batch(sink_);
    for (const auto& r : rejections) sink_.rejected(r);
    for (const auto& obj : fresh) {
      auto it = known_.find(obj.key);
      if (it != known_.end() && sameContent(it->second.object, obj.object)) {
        ++unchanged;
        continue;
      }
      deliverUpsert(sink_, obj);
      ++upserts;
    }
    for (const auto& [key, obj] : known_) {
      if (index.contains(key) || rejectedKeys.contains(key)) continue;
      deliverDelete(sink_, obj.kind, key);
      ++deletes;
    }
  }
  Known next;
  next.reserve(fresh.size());
  // A rejected object keeps its last good version.
  for (const auto& key : rejectedKeys) {
    if (index.contains(key)) continue;
    if (auto it = known_.find(key); it != known_.end()) next.emplace(key, std::move(it->second));
  }
  for (auto& obj : fresh) {
    proxier::ObjectKey key = obj.key;
    next.insert_or_assign(std::move(key), std::move(obj));
  }
  known_ = std::move(next);
  rv_ = std::move(rv);

  bool first;
  {
    std::lock_guard lock(mu_);
    first = !status_.listed;
    status_.listed = true;
    ++status_.lists;
    status_.resourceVersion = rv_;
  }
  spdlog::info(
      "{}: {} at resourceVersion {}: {} objects in {} page(s), {} upserted, {} deleted, "
      "{} unchanged, {} rejected, in {}",
      label(), first ? "listed" : "relisted", rv_, fresh.size(), pages, upserts, deletes, unchanged,
      rejections.size(), secondsText(Clock::now() - started));
  if (first && onFirstList_) onFirstList_();
  // The page buffers were freed, but glibc keeps big freed blocks for reuse; a list happens once
  // an hour at most, so give them back to the system instead of carrying them as RSS.
  if (bytes >= kTrimAfterBytes) malloc_trim(0);
}

Reflector::WatchEnd Reflector::watch() {
  std::chrono::seconds timeout = opts_.minWatchTimeout;
  if (opts_.maxWatchTimeout > opts_.minWatchTimeout) {
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<int64_t> pick(opts_.minWatchTimeout.count(),
                                                opts_.maxWatchTimeout.count());
    timeout = std::chrono::seconds(pick(rng));
  }
  const auto started = Clock::now();
  auto resp = transport_.get(watchTarget(resource_, rv_, timeout), timeout + opts_.watchGrace);
  if (resp->status() != 200) {
    std::string body = readAll(*resp);
    touch();
    ApiStatus st = parseStatusBody(resp->status(), body);
    if (needsRelist(st)) {
      spdlog::info(
          "{}: the API server cannot resume a watch from resourceVersion {} (HTTP {} {}: "
          "{}); relisting",
          label(), rv_, resp->status(), st.reason, st.message);
      return WatchEnd::Relist;
    }
    std::string what = "watch: " + statusError(resp->status(), body);
    // Too many requests, or a server error that says when to come back (a 503 from an API
    // server shutting down or overloaded): wait and resume, as client-go's request retry does;
    // a relist would add load.
    if (resp->status() == 429 || (resp->status() >= 500 && resp->retryAfter().count() > 0)) {
      throw RetryableError(what, resp->retryAfter());
    }
    throw WatchError(what);
  }
  touch();
  contactRestored();
  {
    std::lock_guard lock(mu_);
    status_.watching = true;
    ++status_.watches;
    watchingSince_ = started;
  }
  struct NotWatching {
    Reflector* r;
    ~NotWatching() {
      std::lock_guard lock(r->mu_);
      r->status_.watching = false;
    }
  } guard{this};
  spdlog::debug("{}: watching from resourceVersion {} for {}s", label(), rv_, timeout.count());

  std::string piece;
  WatchLineFramer framer;
  size_t events = 0;
  auto healthy = [&] { return events > 0 || Clock::now() - started >= opts_.healthyWatch; };
  auto onLine = [&](std::string& line) {
    if (handleLine(line)) return true;
    ++events;
    progressed(true);
    return false;
  };
  try {
    while (resp->read(piece)) {
      touch();
      bool relist = framer.feed(piece, onLine);
      piece.clear();
      if (relist) return WatchEnd::Relist;
    }
    if (framer.finish(onLine)) return WatchEnd::Relist;
  } catch (const WatchLineTooLong& e) {
    throw WatchError(e.what());
  } catch (const TransportError& e) {
    if (!healthy()) throw;
    spdlog::warn("{}: watch dropped after {} event(s) ({}); resuming from resourceVersion {}",
                 label(), events, e.what(), rv_);
    progressed(true);
    return WatchEnd::Ended;
  }
  spdlog::debug("{}: watch ended after {} event(s); resuming from resourceVersion {}", label(),
                events, rv_);
  if (!healthy() && Clock::now() - started < std::chrono::seconds(1)) return WatchEnd::Failed;
  // The server ended the watch at its timeout: nothing happened, which is news too.
  progressed(true);
  return WatchEnd::Ended;
}

bool Reflector::handleLine(std::string& line) {
  std::string error;
  auto ev = decodeWatchEvent(line, resource_.kind, resource_.namespaced, decodeOpts_, error);
  if (!ev) {
    std::string excerpt = line.substr(0, 80);
    for (char& c : excerpt) {
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    throw WatchError(
        fmt::format("malformed watch stream ({}) at \"{}\"; restarting the watch", error, excerpt));
  }
  switch (ev->type) {
    case WatchEvent::Type::Error:
      if (needsRelist(ev->status)) {
        spdlog::info("{}: the watch from resourceVersion {} cannot go on ({} {}: {}); relisting",
                     label(), rv_, ev->status.code, ev->status.reason, ev->status.message);
        return true;
      }
      throw WatchError(fmt::format("the server ended the watch with an error: {} {}: {}",
                                   ev->status.code, ev->status.reason, ev->status.message));
    case WatchEvent::Type::Bookmark:
      break;
    case WatchEvent::Type::Added:
    case WatchEvent::Type::Modified:
      if (auto* obj = std::get_if<DecodedObject>(&*ev->decoded)) {
        auto it = known_.find(obj->key);
        if (it == known_.end() || !sameContent(it->second.object, obj->object)) {
          deliverUpsert(sink_, *obj);
          proxier::ObjectKey key = obj->key;
          known_.insert_or_assign(std::move(key), std::move(*obj));
        }
      } else {
        sink_.rejected(std::get<proxier::Rejection>(*ev->decoded));
      }
      break;
    case WatchEvent::Type::Deleted:
      if (auto it = known_.find(ev->key); it != known_.end()) {
        deliverDelete(sink_, resource_.kind, ev->key);
        known_.erase(it);
      }
      break;
  }
  if (!ev->resourceVersion.empty()) rv_ = std::move(ev->resourceVersion);
  {
    std::lock_guard lock(mu_);
    status_.resourceVersion = rv_;
  }
  return false;
}

}  // namespace sliceproxy::slicewatch
