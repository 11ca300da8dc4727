#include "proxier/config/bounded_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sliceproxy::proxier {

namespace {

const char* typeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

bool isTransient(int err) {
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS || err == EIO ||
         err == EAGAIN || err == EINTR || err == EBUSY;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

BoundedRead readBoundedFile(const std::filesystem::path& path, uint64_t maxBytes) {
  BoundedRead out;
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  auto failed = [&] {
    out.transient = isTransient(errno);
    out.error = std::strerror(errno);
    return out;
  };
  if (fd.get() < 0) return failed();
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return failed();
  if (!S_ISREG(st.st_mode)) {
    out.notRegular = true;
    out.error = fmt::format("{}; only regular files are read", typeName(st.st_mode));
    return out;
  }
  auto tooLarge = [&](uint64_t size) {
    out.tooLarge = true;
    out.error = fmt::format("{} bytes, more than the limit of {} bytes", size, maxBytes);
    return out;
  };
  if (static_cast<uint64_t>(st.st_size) > maxBytes) return tooLarge(st.st_size);
  std::string text;
  text.resize(static_cast<size_t>(st.st_size));
  size_t have = 0;
  for (;;) {
    if (have == text.size()) {
      // The file grew since fstat: read on, one bounded step at a time.
      if (have > maxBytes) return tooLarge(have);
      text.resize(std::min<uint64_t>(have + 65536, maxBytes + 1));
    }
    ssize_t n = read(fd.get(), text.data() + have, text.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failed();
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  if (have > maxBytes) return tooLarge(have);
  text.resize(have);
  out.text = std::move(text);
  return out;
}

}  // namespace sliceproxy::proxier
