#include "slice-watch/manifest_dir_source.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <stdexcept>
#include <system_error>

#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch {

namespace fs = std::filesystem;

namespace {

// Events of one batch reach the sink together, so a sync never sees half of them (a Service
// saved without its slices yet, or a file's old objects deleted before its new ones arrive).
class SinkBatch {
 public:
  explicit SinkBatch(proxier::EventSink& sink) : sink_(sink) { sink_.beginBatch(); }
  ~SinkBatch() { sink_.endBatch(); }
  SinkBatch(const SinkBatch&) = delete;
  SinkBatch& operator=(const SinkBatch&) = delete;

 private:
  proxier::EventSink& sink_;
};

// Built from the same parts a Rejection carries (kind, object), so a rejected object can be
// matched to the version it would have replaced.
std::string idOf(std::string_view kind, const std::string& object) {
  return fmt::format("{} {}", kind, object);
}

}  // namespace

std::optional<ManifestDirSource::FileSig> ManifestDirSource::currentSig(const fs::path& path) {
  struct stat st {};
  // A dangling link or a loop has no target to stat: the link itself identifies it.
  if (::stat(path.c_str(), &st) != 0 && ::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return FileSig{st.st_dev, st.st_ino, st.st_size,
                 st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec,
                 st.st_ctim.tv_sec * 1'000'000'000LL + st.st_ctim.tv_nsec};
}

ManifestDirSource::ManifestDirSource(fs::path dir, proxier::EventSink& sink, uint64_t maxFileBytes)
    : dir_(std::move(dir)), sink_(sink), maxFileBytes_(maxFileBytes) {}

ManifestDirSource::~ManifestDirSource() {
  stop();
}

void ManifestDirSource::start() {
  if (watcher_) throw std::logic_error("ManifestDirSource::start called twice");
  // Watch before reading: a change made during the first read is then seen, not lost.
  watcher_ = std::make_unique<DirWatcher>(dir_);
  std::error_code ec;
  fs::directory_iterator probe(dir_, ec);
  if (ec) throw std::system_error(ec, "cannot list " + dir_.string());
  {
    SinkBatch batch(sink_);
    rescan(true);
  }
  sink_.synced();
  thread_ = std::thread([this] { run(); });
}

void ManifestDirSource::stop() {
  if (watcher_) watcher_->wake();
  if (thread_.joinable()) thread_.join();
}

void ManifestDirSource::run() {
  // While the directory is gone, how often its path is tried again.
  constexpr auto kRewatchPeriod = std::chrono::seconds(1);
  auto nextRescan = Clock::now() + kRescanPeriod;
  for (;;) {
    auto due = nextRescan;
    if (!retries_.empty()) {
      for (const auto& [name, r] : retries_) due = std::min(due, r.due);
    }
    if (dirLost_) due = std::min(due, Clock::now() + kRewatchPeriod);
    auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now());
    DirWatcher::Batch batch;
    try {
      batch = watcher_->wait(std::chrono::milliseconds(30), std::chrono::milliseconds(300),
                             std::max(idle, std::chrono::milliseconds(0)));
    } catch (const std::exception& e) {
      spdlog::error("manifest directory {}: stopped watching: {}", dir_.string(), e.what());
      return;
    }
    if (batch.stopped) return;
    auto now = Clock::now();
    bool rescanNow = now >= nextRescan;
    bool work = batch.rescanAll || !batch.names.empty() || rescanNow || dirLost_ ||
                batch.watchLost || (!retries_.empty() && due <= now);
    if (!work) continue;
    try {
      SinkBatch together(sink_);
      if (batch.watchLost) {
        spdlog::error(
            "manifest directory {} was removed or moved; keeping the last state until "
            "it is back",
            dir_.string());
        dirLost_ = true;
      }
      if (dirLost_ || rescanNow) followDirectory();
      if (batch.rescanAll) {
        rescan(true);
      } else {
        for (const auto& name : batch.names) {
          if (manifestFormat(name)) read(name);
        }
      }
      if (rescanNow) {
        if (!dirLost_) rescan(false);
        nextRescan = Clock::now() + kRescanPeriod;
      }
      retryDue(Clock::now());
    } catch (const std::exception& e) {
      // Only the sink's own allocation failures reach here; the next round tries again.
      spdlog::error("manifest directory {}: {}", dir_.string(), e.what());
    }
  }
}

void ManifestDirSource::followDirectory() {
  if (!dirLost_ && !watcher_->replaced()) return;
  if (!watcher_->rewatch()) {
    dirLost_ = true;
    return;
  }
  spdlog::warn(
      "manifest directory {} is back (or was replaced); watching it again and reading "
      "it",
      dir_.string());
  dirLost_ = false;
  rescan(true);
}

void ManifestDirSource::rescan(bool force) {
  std::set<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (manifestFormat(name)) names.insert(std::move(name));
  }
  if (ec) {
    // Not the same as an empty directory: deleting everything on a transient error would be
    // the one outcome worse than doing nothing.
    if (!listFailing_) {
      spdlog::error("manifest directory {}: cannot list: {}; keeping the last state", dir_.string(),
                    ec.message());
    }
    listFailing_ = true;
    return;
  }
  listFailing_ = false;
  for (const auto& [name, objs] : files_) names.insert(name);  // vanished files
  for (const auto& name : names) {
    if (!force && !retries_.contains(name)) {
      auto now = currentSig(dir_ / name);
      auto known = sigs_.find(name);
      if (!now && known == sigs_.end() && !files_.contains(name)) continue;
      if (now && known != sigs_.end() && known->second == *now) continue;
    }
    read(name);
  }
}

void ManifestDirSource::read(const std::string& name) {
  Outcome outcome;
  try {
    outcome = processFile(name);
  } catch (const std::exception& e) {
    // bad_alloc above all: one file costs only itself, and is read again later.
    sigs_.erase(name);
    sink_.rejected({(dir_ / name).string(), "", "", "", std::string(reason::kReadError),
                    fmt::format("cannot read {}: {}; everything the file defined before stays in "
                                "effect",
                                (dir_ / name).string(), e.what())});
    outcome = Outcome::RetryLater;
  }
  if (outcome == Outcome::Done) {
    retries_.erase(name);
    return;
  }
  Retry& r = retries_[name];
  // 0.5 s doubling to 30 s: a descriptor shortage or a full memory rarely lasts, a broken disk
  // should not be hammered.
  auto delay = std::chrono::milliseconds(500) * (1 << std::min(r.attempts, 6));
  r.due = Clock::now() + std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(30));
  ++r.attempts;
}

void ManifestDirSource::retryDue(Clock::time_point now) {
  std::vector<std::string> due;
  for (const auto& [name, r] : retries_) {
    if (r.due <= now) due.push_back(name);
  }
  for (const auto& name : due) read(name);
}

ManifestDirSource::Outcome ManifestDirSource::processFile(const std::string& name) {
  fs::path path = dir_ / name;
  std::vector<DecodeResult> results;
  struct stat st {};
  // stat follows symlinks: a dangling link or a loop is a file that cannot be read, not a
  // file that is gone (which would delete what it defined).
  bool gone = ::lstat(path.c_str(), &st) != 0 && errno == ENOENT;
  // A directory named like a manifest is not one (the source is not recursive): it defines
  // nothing, as if absent.
  if (!gone && ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) gone = true;
  if (gone) {
    sigs_.erase(name);
  } else {
    auto sig = currentSig(path);
    results = decodeManifestFile(path, DecodeOptions{path.string()}, maxFileBytes_);
    for (auto& r : results) {
      auto* rej = std::get_if<proxier::Rejection>(&r);
      if (rej && reason::isDocumentLevel(rej->reason)) {
        if (files_.contains(name)) {
          rej->message += "; everything the file defined before stays in effect";
        }
        bool transient = rej->reason == reason::kReadError;
        if (transient) rej->message += "; retrying";
        sink_.rejected(*rej);
        if (transient) {
          sigs_.erase(name);
          return Outcome::RetryLater;
        }
        if (sig) sigs_[name] = *sig;
        return Outcome::Done;
      }
    }
    if (sig) sigs_[name] = *sig;
  }
  FileObjects previous;
  if (auto it = files_.find(name); it != files_.end()) previous = std::move(it->second);

  FileObjects fresh;
  for (auto& r : results) {
    if (auto* rej = std::get_if<proxier::Rejection>(&r)) {
      if (!rej->object.empty()) {
        std::string id = idOf(rej->kind, rej->object);
        auto old = previous.find(id);
        if (old != previous.end() && !fresh.contains(id)) {
          fresh.emplace(id, old->second);
          rej->message += "; the previous version stays in effect";
        }
      }
      sink_.rejected(*rej);
      continue;
    }
    auto& obj = std::get<DecodedObject>(r);
    std::string object = obj.key.str();
    std::string id = idOf(obj.kind, object);
    if (fresh.contains(id)) {
      sink_.rejected({path.string(), obj.kind, object, "", std::string(reason::kDuplicateObject),
                      "defined more than once in this file; the first definition is used"});
      continue;
    }
    apply(name, id, obj, previous);
    fresh.emplace(std::move(id), std::move(obj));
  }

  const FileObjects* now = nullptr;
  if (fresh.empty()) {
    files_.erase(name);
  } else {
    now = &(files_[name] = std::move(fresh));
  }
  for (const auto& [id, obj] : previous) {
    if (now && now->contains(id)) continue;
    auto own = owners_.find(id);
    if (own != owners_.end() && own->second == name) release(id, obj, name);
  }
  return Outcome::Done;
}

void ManifestDirSource::apply(const std::string& name, const std::string& id,
                              const DecodedObject& obj, const FileObjects& previous) {
  auto own = owners_.find(id);
  if (own == owners_.end()) {
    owners_.emplace(id, name);
    deliverUpsert(sink_, obj);
  } else if (own->second == name) {
    auto old = previous.find(id);
    if (old == previous.end() || !sameContent(old->second.object, obj.object)) {
      deliverUpsert(sink_, obj);
    }
  } else {
    sink_.rejected({(dir_ / name).string(), obj.kind, obj.key.str(), "",
                    std::string(reason::kDuplicateObject),
                    fmt::format("already defined in {}; this definition is ignored while that one "
                                "exists",
                                (dir_ / own->second).string())});
  }
}

void ManifestDirSource::release(const std::string& id, const DecodedObject& was,
                                const std::string& fromFile) {
  // Files are ordered by name, the same order the first read used to pick owners.
  for (const auto& [file, objs] : files_) {
    if (file == fromFile) continue;
    auto it = objs.find(id);
    if (it == objs.end()) continue;
    owners_[id] = file;
    if (!sameContent(was.object, it->second.object)) deliverUpsert(sink_, it->second);
    return;
  }
  owners_.erase(id);
  deliverDelete(sink_, was.kind, was.key);
}

}  // namespace sliceproxy::slicewatch
