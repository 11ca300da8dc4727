#pragma once
// Runs the command-line tools whose own save/restore formats are the stable interface to a
// subsystem (iptables-save/-restore, ipset), the way kube-proxy itself drives them.

#include <optional>
#include <string>
#include <vector>

namespace sliceproxy::proxier::kube_proxy_cleanup {

struct ToolResult {
  int exitCode = -1;  // -1: killed by a signal or not started (error says why)
  std::string out;
  std::string err;
  std::string error;  // why it could not be run
};

// The full path of `name` on $PATH, or in /usr/sbin and /sbin (where iptables lives and which a
// non-root PATH often lacks); nullopt when it is not installed.
std::optional<std::string> findTool(const std::string& name);

// Runs `path` with `args` (argv[0] is the path), `input` on its standard input, and collects
// both outputs. Neither blocks on a full pipe: the three streams are anonymous memory files.
ToolResult runTool(const std::string& path, const std::vector<std::string>& args,
                   const std::string& input = "");

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
