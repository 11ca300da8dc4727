#include "slice-watch/exec_credential.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "slice-watch/rfc3339.h"

extern char** environ;

namespace sliceproxy::slicewatch {

namespace json = boost::json;

namespace {

constexpr size_t kMaxOutput = 1 << 20;  // an ExecCredential is a few kilobytes
constexpr size_t kMaxStderr = 16 << 10;
// client-go renews a credential shortly before it expires, not on the request that fails.
constexpr auto kRenewBefore = std::chrono::minutes(1);

std::string stringField(const json::object& o, std::string_view key, std::string_view where) {
  const json::value* v = o.if_contains(key);
  if (!v || v->is_null()) return "";
  if (!v->is_string()) {
    throw std::runtime_error(fmt::format("{}.{} must be a string", where, key));
  }
  return std::string(v->get_string());
}

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (::pipe2(fd, O_CLOEXEC) != 0) {
      throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
    }
  }
  ~Pipe() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  void closeEnd(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
};

}  // namespace

ExecCredential parseExecCredential(std::string_view text, std::string_view apiVersion) {
  json::value v;
  try {
    v = json::parse(json::string_view(text.data(), text.size()));
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("its output is not JSON ({})", e.what()));
  }
  if (!v.is_object()) throw std::runtime_error("its output is not a JSON object");
  const json::object& o = v.get_object();
  if (std::string kind = stringField(o, "kind", "ExecCredential"); kind != "ExecCredential") {
    throw std::runtime_error(fmt::format("kind is \"{}\", not ExecCredential", kind));
  }
  if (std::string got = stringField(o, "apiVersion", "ExecCredential"); got != apiVersion) {
    throw std::runtime_error(
        fmt::format("apiVersion is \"{}\" where \"{}\" was asked for", got, apiVersion));
  }
  const json::value* st = o.if_contains("status");
  if (!st || !st->is_object()) throw std::runtime_error("it has no status");
  const json::object& s = st->get_object();
  ExecCredential c;
  c.token = stringField(s, "token", "status");
  c.certPem = stringField(s, "clientCertificateData", "status");
  c.keyPem = stringField(s, "clientKeyData", "status");
  if (c.certPem.empty() != c.keyPem.empty()) {
    throw std::runtime_error(
        "status has clientCertificateData without clientKeyData, or the other way round");
  }
  if (c.token.empty() && c.certPem.empty()) {
    throw std::runtime_error("status has neither a token nor a client certificate and key");
  }
  if (std::string t = stringField(s, "expirationTimestamp", "status"); !t.empty()) {
    c.expiry = parseRfc3339(t);
    if (!c.expiry) {
      throw std::runtime_error(
          fmt::format("status.expirationTimestamp \"{}\" is not an RFC 3339 time", t));
    }
  }
  return c;
}

std::string execInfo(const ExecConfig& cfg) {
  json::object spec;
  spec["interactive"] = false;
  if (!cfg.clusterJson.empty()) spec["cluster"] = json::parse(cfg.clusterJson);
  json::object info;
  info["apiVersion"] = cfg.apiVersion;
  info["kind"] = "ExecCredential";
  info["spec"] = std::move(spec);
  return json::serialize(info);
}

ExecCredentialSource::ExecCredentialSource(ExecConfig cfg, std::chrono::milliseconds timeout)
    : cfg_(std::move(cfg)), timeout_(timeout) {}

ExecCredential ExecCredentialSource::get() {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  if (cached_ && !rejected_ && (!cached_->expiry || *cached_->expiry > now + kRenewBefore)) {
    return *cached_;
  }
  ExecCredential c = run();
  if (cached_ && c != *cached_) spdlog::info("exec plugin {}: new credential", cfg_.command);
  cached_ = std::move(c);
  rejected_ = false;
  return *cached_;
}

void ExecCredentialSource::invalidate() {
  std::lock_guard lock(mu_);
  rejected_ = true;
}

ExecCredential ExecCredentialSource::run() const {
  auto fail = [&](const std::string& why) {
    return std::runtime_error(
        fmt::format("exec credential plugin {} of {}: {}", cfg_.command, cfg_.origin, why));
  };
  // The plugin's environment: ours, the kubeconfig's env entries, and the request.
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (kv.starts_with("KUBERNETES_EXEC_INFO=")) continue;
    bool replaced = false;
    for (const auto& [k, v] : cfg_.env) replaced |= kv.starts_with(k + "=");
    if (!replaced) envs.emplace_back(kv);
  }
  for (const auto& [k, v] : cfg_.env) envs.push_back(k + "=" + v);
  envs.push_back("KUBERNETES_EXEC_INFO=" + execInfo(cfg_));
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argvs{cfg_.command};
  argvs.insert(argvs.end(), cfg_.args.begin(), cfg_.args.end());
  std::vector<char*> argv;
  for (auto& a : argvs) argv.push_back(a.data());
  argv.push_back(nullptr);

  Pipe out, err;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.fd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err.fd[1], 2);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, cfg_.command.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    std::string why = fmt::format("cannot run it: {}", std::strerror(rc));
    if (!cfg_.installHint.empty()) why += "; " + cfg_.installHint;
    throw fail(why);
  }
  out.closeEnd(1);
  err.closeEnd(1);

  std::string stdoutText, stderrText;
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  bool timedOut = false;
  pollfd fds[2] = {{out.fd[0], POLLIN, 0}, {err.fd[0], POLLIN, 0}};
  int open = 2;
  char buf[8192];
  while (open > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timedOut = true;
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        fds[i].fd = -1;
        --open;
        continue;
      }
      std::string& to = i == 0 ? stdoutText : stderrText;
      if (to.size() < (i == 0 ? kMaxOutput : kMaxStderr)) to.append(buf, static_cast<size_t>(n));
    }
  }
  if (timedOut) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  auto trimmed = [](std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s.size() > 400 ? "..." + s.substr(s.size() - 400) : s;
  };
  if (timedOut) {
    throw fail(fmt::format("no answer within {} s; killed",
                           std::chrono::duration<double>(timeout_).count()));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string how = WIFEXITED(status) ? fmt::format("exited with {}", WEXITSTATUS(status))
                                        : fmt::format("killed by signal {}", WTERMSIG(status));
    if (!stderrText.empty()) how += ": " + trimmed(stderrText);
    throw fail(how);
  }
  if (stdoutText.size() >= kMaxOutput) throw fail("its output is larger than 1 MiB");
  try {
    return parseExecCredential(stdoutText, cfg_.apiVersion);
  } catch (const std::runtime_error& e) {
    throw fail(e.what());
  }
}

}  // namespace sliceproxy::slicewatch
