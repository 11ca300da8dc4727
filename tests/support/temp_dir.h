#pragma once
// A scratch directory for a test's files, removed with everything in it when the test ends.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace sliceproxy::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "sliceproxy-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes the file atomically (a rename, as a rotation does) and returns its path; `exec`
  // makes it executable by its owner.
  std::string write(const std::string& name, const std::string& text, bool exec = false) const {
    const std::filesystem::path p = path_ / name;
    const std::filesystem::path tmp = path_ / (name + ".tmp");
    std::ofstream(tmp) << text;
    if (exec) std::filesystem::permissions(tmp, std::filesystem::perms::owner_all);
    std::filesystem::rename(tmp, p);
    return p.string();
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path_ / name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace sliceproxy::testing
