#include "proxier/cmd/kube_proxy_cleanup/iptables_plan.h"

#include <fmt/format.h>

#include <array>
#include <set>
#include <sstream>

namespace sliceproxy::proxier::kube_proxy_cleanup {

namespace {

// The kubelet creates these (KUBE-FIREWALL guards against martian localhost traffic,
// KUBE-KUBELET-CANARY tells it when its chains were flushed); older kubelets also made
// KUBE-MARK-DROP for KUBE-FIREWALL to use.
constexpr std::array<const char*, 3> kKubeletChains = {"KUBE-FIREWALL", "KUBE-KUBELET-CANARY",
                                                       "KUBE-MARK-DROP"};

struct Rule {
  std::string chain;
  std::string line;
  std::string target;  // the chain it jumps or goes to, "" if none
};

struct Table {
  std::string name;
  std::vector<std::string> chains;
  std::vector<Rule> rules;
};

}  // namespace

bool isKubeProxyChain(const std::string& chain) {
  if (chain.rfind("KUBE-", 0) != 0) return false;
  for (const char* k : kKubeletChains) {
    if (chain == k) return false;
  }
  return true;
}

std::vector<std::string> splitRuleWords(const std::string& line) {
  std::vector<std::string> words;
  std::string cur;
  bool inWord = false, quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) {
        cur += line[++i];
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = inWord = true;
    } else if (c == ' ' || c == '\t') {
      if (inWord) words.push_back(std::move(cur));
      cur.clear();
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push_back(std::move(cur));
  return words;
}

std::string TablePlan::restoreScript() const {
  // Declaring a chain in a --noflush restore flushes it, so the kube-proxy chains lose every
  // rule (and with them every reference between themselves) before they are deleted.
  std::string out = "*" + table + "\n";
  for (const auto& c : chains) out += ":" + c + " - [0:0]\n";
  for (const auto& r : jumpRules) out += "-D" + r.substr(2) + "\n";
  for (const auto& c : chains) out += "-X " + c + "\n";
  out += "COMMIT\n";
  return out;
}

std::vector<TablePlan> planIptablesCleanup(const std::string& saveOutput, std::string& error) {
  std::vector<Table> tables;
  std::istringstream in(saveOutput);
  std::string line;
  size_t lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '*') {
      tables.push_back({line.substr(1), {}, {}});
      continue;
    }
    if (line == "COMMIT") continue;
    if (tables.empty()) {
      error = fmt::format("iptables-save output line {} is outside a table: \"{}\"", lineNo, line);
      return {};
    }
    auto& t = tables.back();
    if (line[0] == ':') {
      auto end = line.find(' ');
      t.chains.push_back(line.substr(1, end == std::string::npos ? end : end - 1));
      continue;
    }
    auto words = splitRuleWords(line);
    if (words.size() < 2 || words[0] != "-A") {
      error = fmt::format("iptables-save output line {} is not a rule: \"{}\"", lineNo, line);
      return {};
    }
    Rule r{words[1], line, ""};
    for (size_t i = 2; i + 1 < words.size(); ++i) {
      const auto& w = words[i];
      if (w == "-j" || w == "--jump" || w == "-g" || w == "--goto") r.target = words[i + 1];
    }
    t.rules.push_back(std::move(r));
  }

  std::vector<TablePlan> plans;
  for (const auto& t : tables) {
    TablePlan p{t.name, {}, {}};
    std::set<std::string> removed;
    for (const auto& c : t.chains) {
      if (isKubeProxyChain(c)) {
        p.chains.push_back(c);
        removed.insert(c);
      }
    }
    for (const auto& r : t.rules) {
      if (!removed.contains(r.chain) && removed.contains(r.target)) p.jumpRules.push_back(r.line);
    }
    if (!p.empty()) plans.push_back(std::move(p));
  }
  return plans;
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
