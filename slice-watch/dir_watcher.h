#pragma once
// inotify on one directory (not recursive), reporting which names changed in coalesced batches,
// with a wake-up another thread can trigger to make the watching thread stop.

#include <chrono>
#include <filesystem>
#include <set>
#include <string>

#include <sys/types.h>

namespace sliceproxy::slicewatch {

class DirWatcher {
 public:
  struct Batch {
    std::set<std::string> names;  // entries created, written, moved in or out, or deleted
    bool rescanAll = false;       // the kernel queue overflowed, or a ..data link flipped
    bool watchLost = false;       // the directory itself was deleted or moved away (now unwatched)
    bool stopped = false;         // wake() was called
  };

  // Throws std::system_error when the directory cannot be watched.
  explicit DirWatcher(const std::filesystem::path& dir);
  ~DirWatcher();
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

  // Blocks until something happens, then keeps collecting until the directory has been quiet
  // for `settle` (at most `maxWait` in all): an editor's save is several events (write a temp
  // file, rename it over, or rename the original away and write anew), and the files should
  // be read once, after it.
  // Returns an empty batch when nothing happened for `idle` (negative: wait forever).
  Batch wait(std::chrono::milliseconds settle = std::chrono::milliseconds(30),
             std::chrono::milliseconds maxWait = std::chrono::milliseconds(300),
             std::chrono::milliseconds idle = std::chrono::milliseconds(-1));

  // Watches the directory at the path again: after watchLost (it was replaced: `mv dir
  // dir.old; mkdir dir`), or when the path now names another directory than the one watched.
  // False (and still unwatched) when the path cannot be watched yet.
  bool rewatch();
  bool watching() const { return watch_ >= 0; }
  // The path names another directory than the one watched (replaced without an event seen).
  bool replaced() const;

  // Thread-safe; the current or next wait() returns with stopped set.
  void wake();

 private:
  // Reads every queued event into batch; false when nothing was queued.
  bool drain(Batch& batch);

  void unwatch();

  std::filesystem::path dir_;
  dev_t dev_ = 0;  // identity of the directory watched
  ino_t ino_ = 0;
  int inotifyFd_ = -1;
  int wakeFd_ = -1;
  int watch_ = -1;
};

}  // namespace sliceproxy::slicewatch
