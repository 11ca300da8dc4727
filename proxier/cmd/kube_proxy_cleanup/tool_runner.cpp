#include "proxier/cmd/kube_proxy_cleanup/tool_runner.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

extern char** environ;

namespace sliceproxy::proxier::kube_proxy_cleanup {

namespace {

class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(memfd_create(name, MFD_CLOEXEC)) {}
  ~MemFile() {
    if (fd_ >= 0) close(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  int fd() const { return fd_; }
  bool write(const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::write(fd_, s.data() + done, s.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return lseek(fd_, 0, SEEK_SET) == 0;
  }
  std::string read() {
    std::string out;
    if (lseek(fd_, 0, SEEK_SET) != 0) return out;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
};

}  // namespace

std::optional<std::string> findTool(const std::string& name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

ToolResult runTool(const std::string& path, const std::vector<std::string>& args,
                   const std::string& input) {
  ToolResult res;
  MemFile in("tool-stdin"), out("tool-stdout"), err("tool-stderr");
  if (in.fd() < 0 || out.fd() < 0 || err.fd() < 0 || !in.write(input)) {
    res.error =
        fmt::format("running {}: cannot create its input/output files: {}", path, strerror(errno));
    return res;
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.fd(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.fd(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.fd(), STDERR_FILENO);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    res.error = fmt::format("running {}: {}", path, strerror(rc));
    return res;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      res.error = fmt::format("waiting for {}: {}", path, strerror(errno));
      return res;
    }
  }
  if (WIFEXITED(status)) {
    res.exitCode = WEXITSTATUS(status);
  } else {
    res.error = fmt::format("{} was killed by signal {}", path, WTERMSIG(status));
  }
  res.out = out.read();
  res.err = err.read();
  return res;
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
