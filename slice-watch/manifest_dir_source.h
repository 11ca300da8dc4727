#pragma once
// A source that serves the Services, EndpointSlices and Nodes described by the *.yaml, *.yml
// and *.json files of one directory (not recursive), and follows edits to them with inotify.
// For standalone nodes, demos and benchmarks.
//
// Semantics:
// - A file's objects are upserted when they appear or their content changes, and deleted when
//   they leave the file or the file is removed. Content is compared as decoded (sameContent):
//   reformatting a file, reordering fields or touching fields the model does not keep produces
//   no event. Events follow the order of the objects in the file.
// - An object defined in two files belongs to the file read first (files are read in name
//   order at start); the other definition is rejected (duplicate_object) and takes over only
//   if the owner stops defining it.
// - Bad input costs only itself, and costs the last good state nothing: an object that fails
//   to decode is rejected and its previous version from the same file stays in effect, and a
//   file that cannot be read or parsed at all is rejected once while everything it defined
//   before stays in effect. Every Rejection has origin = the file's path.
// - Rejections are reported each time the file holding them is read.
// - Nothing a file holds may cost more than itself: files larger than maxFileBytes, and
//   anything but regular files, are refused unread; YAML aliases are bounded (yaml_to_json.h);
//   an exception while reading one file (even bad_alloc) is that file's rejection alone.
// - A file that could not be read (EMFILE, EIO, bad_alloc) is read again with backoff (0.5 s
//   doubling to 30 s) until it can. Every kRescanPeriod the directory is listed and files whose
//   identity, size or times changed are read again, repairing what inotify did not report; a
//   directory replaced under its path (`mv dir dir.old; mkdir dir`) is watched again and read.
// - The first read is one sink batch (beginBatch/endBatch) followed by synced(); after that,
//   each burst of changes (every file touched within the watcher's settle window) is one batch.

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxier/core/events.h"
#include "slice-watch/decoded_object.h"
#include "slice-watch/dir_watcher.h"
#include "slice-watch/manifest_file.h"

namespace sliceproxy::slicewatch {

class ManifestDirSource {
 public:
  static constexpr std::chrono::seconds kRescanPeriod{10};

  ManifestDirSource(std::filesystem::path dir, proxier::EventSink& sink,
                    uint64_t maxFileBytes = kDefaultManifestMaxFileBytes);
  ~ManifestDirSource();  // stops
  ManifestDirSource(const ManifestDirSource&) = delete;
  ManifestDirSource& operator=(const ManifestDirSource&) = delete;

  // Reads every manifest, delivers the upserts and synced() on the calling thread, then follows
  // changes on a thread of its own. Throws std::system_error if the directory cannot be
  // watched, std::logic_error if called twice.
  void start();
  // Idempotent; returns once the watching thread has exited.
  void stop();

 private:
  // What one file defines, by object id (see idOf), whether or not it owns each object.
  using FileObjects = std::map<std::string, DecodedObject>;

  using Clock = std::chrono::steady_clock;
  // What a read saw of a file; a change of any part means the file must be read again.
  struct FileSig {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtimeNs = 0, ctimeNs = 0;
    bool operator==(const FileSig&) const = default;
  };
  struct Retry {
    int attempts = 0;
    Clock::time_point due;
  };
  enum class Outcome { Done, RetryLater };
  static std::optional<FileSig> currentSig(const std::filesystem::path& path);

  void run();
  // force: read every file; else only those whose FileSig changed, and vanished ones.
  void rescan(bool force);
  void read(const std::string& name);  // processFile, isolating and scheduling its failures
  Outcome processFile(const std::string& name);
  void retryDue(Clock::time_point now);
  void followDirectory();  // re-watches a replaced directory
  // Applies one object defined by file `name`; `previous` is what that file defined before.
  void apply(const std::string& name, const std::string& id, const DecodedObject& obj,
             const FileObjects& previous);
  void release(const std::string& id, const DecodedObject& was, const std::string& fromFile);

  std::filesystem::path dir_;
  proxier::EventSink& sink_;
  uint64_t maxFileBytes_;
  std::unique_ptr<DirWatcher> watcher_;
  std::thread thread_;
  // Touched only by start() before the thread exists, then only by the thread.
  std::map<std::string, FileObjects> files_;  // by file name; ordered: the takeover order
  std::unordered_map<std::string, std::string> owners_;  // object id -> file name
  std::unordered_map<std::string, FileSig> sigs_;        // files read (not failed), by name
  std::map<std::string, Retry> retries_;                 // files whose read failed
  bool listFailing_ = false;                             // logged once per streak
  bool dirLost_ = false;
};

}  // namespace sliceproxy::slicewatch
