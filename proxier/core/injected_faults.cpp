#include "proxier/core/injected_faults.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <sstream>

namespace sliceproxy::proxier {

namespace faults_detail {
std::atomic<bool> armed{false};
}  // namespace faults_detail

namespace {

constexpr std::array<const char*, static_cast<size_t>(FaultPoint::kCount)> kPointNames = {
    "nft-commit", "nft-ack-overrun", "conntrack-delete"};

// The errnos a netlink exchange can plausibly fail with.
constexpr std::pair<const char*, int> kErrnos[] = {
    {"EPERM", EPERM},   {"ENOBUFS", ENOBUFS}, {"ENOMEM", ENOMEM}, {"EINVAL", EINVAL},
    {"ENOENT", ENOENT}, {"EBUSY", EBUSY},     {"EIO", EIO},       {"EAGAIN", EAGAIN},
};

struct Fault {
  int err = 0;
  long left = 0;  // -1: always
};

std::mutex mu;
std::array<Fault, static_cast<size_t>(FaultPoint::kCount)> table;

const char* errnoName(int e) {
  for (const auto& [name, value] : kErrnos) {
    if (value == e) return name;
  }
  return "?";
}

std::string describeLocked() {
  std::string out;
  for (size_t i = 0; i < table.size(); ++i) {
    if (table[i].left == 0) continue;
    if (!out.empty()) out += ", ";
    out +=
        fmt::format("{} {} {}", kPointNames[i], errnoName(table[i].err),
                    table[i].left < 0 ? std::string("always") : fmt::format("x{}", table[i].left));
  }
  return out.empty() ? "none" : out;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

int faults_detail::fireArmed(FaultPoint p) {
  std::lock_guard lock(mu);
  Fault& f = table[static_cast<size_t>(p)];
  if (f.left == 0) return 0;
  if (f.left > 0) --f.left;
  spdlog::warn("testing: injecting fault {} {} ({} left)", kPointNames[static_cast<size_t>(p)],
               errnoName(f.err), f.left < 0 ? std::string("always") : std::to_string(f.left));
  return f.err;
}

std::string armFaults(const std::string& spec) {
  decltype(table) next{};
  std::string text = spec;
  for (char& c : text) {
    if (c == '\n') c = ',';
  }
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    item = trim(item);
    if (item.empty() || item[0] == '#') continue;
    std::stringstream parts(item);
    std::string point, err, count = "once";
    std::getline(parts, point, ':');
    std::getline(parts, err, ':');
    if (parts.good()) std::getline(parts, count);
    size_t idx = 0;
    while (idx < kPointNames.size() && point != kPointNames[idx]) ++idx;
    if (idx == kPointNames.size()) return fmt::format("fault \"{}\": no point \"{}\"", item, point);
    Fault f;
    for (const auto& [name, value] : kErrnos) {
      if (err == name) f.err = value;
    }
    if (f.err == 0) return fmt::format("fault \"{}\": unknown errno \"{}\"", item, err);
    if (count == "once") {
      f.left = 1;
    } else if (count == "always") {
      f.left = -1;
    } else {
      try {
        size_t used = 0;
        f.left = std::stol(count, &used);
        if (used != count.size() || f.left <= 0) throw std::invalid_argument(count);
      } catch (const std::exception&) {
        return fmt::format("fault \"{}\": count \"{}\" is not once, always or a number > 0", item,
                           count);
      }
    }
    next[idx] = f;
  }
  std::lock_guard lock(mu);
  table = next;
  bool any = false;
  for (const auto& f : table) any = any || f.left != 0;
  faults_detail::armed.store(any, std::memory_order_relaxed);
  return "";
}

std::string describeArmedFaults() {
  std::lock_guard lock(mu);
  return describeLocked();
}

}  // namespace sliceproxy::proxier
