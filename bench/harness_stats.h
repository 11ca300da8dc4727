#pragma once
// Small measuring helpers shared by the issue-7 harness programs: percentiles, the process's CPU
// time and memory high-water mark, and a flat JSON object writer (the harness's output is read
// by bench/harness/, one object per line).

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace sliceproxy::bench {

using Clock = std::chrono::steady_clock;

inline double msSince(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// Nearest-rank percentile of unsorted samples; 0 for none.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// User + system CPU seconds of this process so far (all threads).
inline double cpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A field of /proc/self/status in MB (VmHWM: peak RSS, VmRSS: current).
inline double procStatusMB(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(prefix.size())) / 1024.0;
  }
  return 0;
}

// Builds one JSON object; values are numbers, strings without quotes or backslashes, or raw
// JSON produced elsewhere.
class JsonObject {
 public:
  JsonObject& num(const std::string& k, double v) {
    add(k, std::isfinite(v) ? fmt::format("{:.6g}", v) : "null");
    return *this;
  }
  JsonObject& str(const std::string& k, const std::string& v) {
    add(k, fmt::format("\"{}\"", v));
    return *this;
  }
  JsonObject& raw(const std::string& k, const std::string& json) {
    add(k, json.empty() ? "null" : json);
    return *this;
  }
  std::string text() const { return fmt::format("{{{}}}", body_); }
  void print() const { std::printf("%s\n", text().c_str()), std::fflush(stdout); }

 private:
  void add(const std::string& k, const std::string& v) {
    fmt::format_to(std::back_inserter(body_), "{}\"{}\":{}", body_.empty() ? "" : ",", k, v);
  }
  std::string body_;
};

}  // namespace sliceproxy::bench
