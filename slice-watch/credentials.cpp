#include "slice-watch/credentials.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "slice-watch/api_config.h"

namespace sliceproxy::slicewatch {

BearerToken::BearerToken(std::string fixedToken, std::string tokenFile, Clock::duration refresh,
                         std::shared_ptr<ExecCredentialSource> exec)
    : fixed_(std::move(fixedToken)),
      file_(std::move(tokenFile)),
      refresh_(refresh),
      exec_(std::move(exec)) {
  token_ = fixed_;
}

std::string BearerToken::readFile() const {
  std::string text = readFileOrThrow(file_, "token file");
  // Files written by editors and `echo` end with a newline; a token never contains whitespace.
  auto end = text.find_last_not_of(" \t\r\n");
  text.resize(end == std::string::npos ? 0 : end + 1);
  auto start = text.find_first_not_of(" \t\r\n");
  text.erase(0, start == std::string::npos ? text.size() : start);
  if (text.empty()) throw std::runtime_error(fmt::format("token file {} is empty", file_));
  return text;
}

void BearerToken::load() {
  if (exec_) {
    std::string t = exec_->get().token;
    std::lock_guard lock(mu_);
    token_ = std::move(t);
    return;
  }
  if (file_.empty()) return;
  std::string t = readFile();
  std::lock_guard lock(mu_);
  token_ = std::move(t);
  readAt_ = Clock::now();
  stale_ = false;
}

std::string BearerToken::get() {
  std::lock_guard lock(mu_);
  if (exec_) {
    try {
      token_ = exec_->get().token;
    } catch (const std::exception& e) {
      spdlog::warn("{}; keeping the credential it gave before", e.what());
    }
    return token_;
  }
  if (file_.empty()) return token_;
  auto now = Clock::now();
  if (stale_ || now - readAt_ >= refresh_) {
    try {
      std::string t = readFile();
      if (!token_.empty() && t != token_) spdlog::info("token file {}: new token loaded", file_);
      token_ = std::move(t);
    } catch (const std::exception& e) {
      spdlog::warn("{}; keeping the token read before", e.what());
    }
    readAt_ = now;
    stale_ = false;
  }
  return token_;
}

void BearerToken::invalidate() {
  if (exec_) exec_->invalidate();
  std::lock_guard lock(mu_);
  stale_ = true;
}

}  // namespace sliceproxy::slicewatch
