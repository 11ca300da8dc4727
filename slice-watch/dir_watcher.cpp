#include "slice-watch/dir_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <system_error>

namespace sliceproxy::slicewatch {

namespace {

constexpr uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                           IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

[[noreturn]] void throwErrno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

DirWatcher::DirWatcher(const std::filesystem::path& dir) : dir_(dir) {
  inotifyFd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotifyFd_ < 0) throwErrno("inotify_init1");
  wakeFd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakeFd_ < 0) {
    int saved = errno;
    close(inotifyFd_);
    errno = saved;
    throwErrno("eventfd");
  }
  if (!rewatch()) {
    int saved = errno;
    close(inotifyFd_);
    close(wakeFd_);
    errno = saved;
    throwErrno("inotify_add_watch " + dir.string());
  }
}

bool DirWatcher::rewatch() {
  unwatch();
  struct stat st {};
  if (stat(dir_.c_str(), &st) != 0) return false;
  int wd = inotify_add_watch(inotifyFd_, dir_.c_str(), kMask);
  if (wd < 0) return false;
  watch_ = wd;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  return true;
}

void DirWatcher::unwatch() {
  // The kernel may have dropped the watch already (IN_IGNORED); EINVAL then is expected.
  if (watch_ >= 0) inotify_rm_watch(inotifyFd_, watch_);
  watch_ = -1;
}

bool DirWatcher::replaced() const {
  struct stat st {};
  if (stat(dir_.c_str(), &st) != 0) return watch_ >= 0;
  return watch_ < 0 || st.st_dev != dev_ || st.st_ino != ino_;
}

DirWatcher::~DirWatcher() {
  close(inotifyFd_);
  close(wakeFd_);
}

void DirWatcher::wake() {
  uint64_t one = 1;
  // The counter only ever needs to be non-zero, so a failed write (counter full) is harmless.
  [[maybe_unused]] auto n = write(wakeFd_, &one, sizeof(one));
}

bool DirWatcher::drain(Batch& batch) {
  alignas(inotify_event) char buf[16384];
  bool any = false;
  for (;;) {
    ssize_t len = read(inotifyFd_, buf, sizeof(buf));
    if (len < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return any;
      throwErrno("read inotify");
    }
    any = true;
    for (ssize_t off = 0; off < len;) {
      auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) batch.rescanAll = true;
      // A watch given up (the directory moved away) may still have events queued.
      if (ev->wd != watch_) continue;
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) batch.watchLost = true;
      if (ev->len == 0) continue;
      std::string name(ev->name);  // NUL-padded to ev->len
      // Kubernetes volume updates (ConfigMap, Secret) swap a ..data symlink in one rename; every
      // visible file then points at new content without an event of its own.
      if (name.starts_with("..")) batch.rescanAll = true;
      batch.names.insert(std::move(name));
    }
  }
}

DirWatcher::Batch DirWatcher::wait(std::chrono::milliseconds settle,
                                   std::chrono::milliseconds maxWait,
                                   std::chrono::milliseconds idle) {
  Batch batch;
  auto deadline = std::chrono::steady_clock::time_point::max();
  for (;;) {
    int timeout =
        idle.count() < 0 ? -1 : static_cast<int>(std::min<int64_t>(idle.count(), INT32_MAX));
    if (deadline != std::chrono::steady_clock::time_point::max()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, std::min(left, settle).count()));
    }
    pollfd fds[2] = {{inotifyFd_, POLLIN, 0}, {wakeFd_, POLLIN, 0}};
    int n = poll(fds, 2, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      throwErrno("poll");
    }
    if (fds[1].revents) {
      batch.stopped = true;
      return batch;
    }
    if (n == 0) return batch;  // quiet for `settle`, or out of time
    if (drain(batch) && deadline == std::chrono::steady_clock::time_point::max()) {
      deadline = std::chrono::steady_clock::now() + maxWait;
    }
    if (batch.watchLost) {
      unwatch();  // a moved directory would go on reporting from its new place
      return batch;
    }
    if (std::chrono::steady_clock::now() >= deadline) return batch;
  }
}

}  // namespace sliceproxy::slicewatch
