#include "proxier/config/network_config.h"

#include <fmt/format.h>

namespace sliceproxy::proxier {

const char* localDetectModeName(LocalDetectMode m) {
  switch (m) {
    case LocalDetectMode::None:
      return "None";
    case LocalDetectMode::ClusterCIDR:
      return "ClusterCIDR";
    case LocalDetectMode::NodeCIDR:
      return "NodeCIDR";
    case LocalDetectMode::InterfaceNamePrefix:
      return "InterfaceNamePrefix";
    case LocalDetectMode::BridgeInterface:
      return "BridgeInterface";
  }
  return "?";
}

std::optional<LocalDetectMode> parseLocalDetectMode(std::string_view s) {
  for (auto m : {LocalDetectMode::None, LocalDetectMode::ClusterCIDR, LocalDetectMode::NodeCIDR,
                 LocalDetectMode::InterfaceNamePrefix, LocalDetectMode::BridgeInterface}) {
    if (s == localDetectModeName(m)) return m;
  }
  return std::nullopt;
}

const IpAddr* NetworkConfig::snatAddress(IpFamily f) const {
  for (const auto& a : snatAddresses) {
    if (a.family == f) return &a;
  }
  return nullptr;
}

const Cidr* NetworkConfig::clusterCIDR(IpFamily f) const {
  for (const auto& c : clusterCIDRs) {
    if (c.addr.family == f) return &c;
  }
  return nullptr;
}

std::string setNodeIpOverride(NetworkConfig& out, const std::string& bindAddress) {
  out.nodeIpOverride.reset();
  if (bindAddress.empty()) return "";
  auto a = IpAddr::parse(bindAddress);
  if (!a) return fmt::format("--bind-address: \"{}\" is not an IP address", bindAddress);
  if (!a->isUnspecified()) out.nodeIpOverride = *a;
  return "";
}

std::string buildNetworkConfig(NetworkConfig& out, const std::vector<std::string>& clusterCIDRs,
                               const std::string& detectLocalMode,
                               const std::vector<std::string>& snatAddresses,
                               const std::vector<std::string>& nodePortAddresses,
                               int masqueradeBit) {
  for (const auto& text : clusterCIDRs) {
    auto c = Cidr::parse(text);
    if (!c) return fmt::format("--cluster-cidr: \"{}\" is not a CIDR", text);
    if (out.clusterCIDR(c->addr.family)) {
      return fmt::format("--cluster-cidr: more than one {} CIDR", familyName(c->addr.family));
    }
    out.clusterCIDRs.push_back(*c);
  }
  if (detectLocalMode.empty()) {
    // kube-proxy's default is ClusterCIDR, which detects nothing until a CIDR is given.
    out.detectLocal =
        out.clusterCIDRs.empty() ? LocalDetectMode::None : LocalDetectMode::ClusterCIDR;
  } else {
    auto m = parseLocalDetectMode(detectLocalMode);
    if (!m) {
      return fmt::format(
          "--detect-local-mode: \"{}\" is not one of ClusterCIDR, NodeCIDR, InterfaceNamePrefix, "
          "BridgeInterface",
          detectLocalMode);
    }
    out.detectLocal = *m;
  }
  if (out.detectLocal == LocalDetectMode::ClusterCIDR && out.clusterCIDRs.empty()) {
    return "--detect-local-mode=ClusterCIDR needs --cluster-cidr";
  }
  if (out.detectLocal == LocalDetectMode::InterfaceNamePrefix && out.podInterfacePrefix.empty()) {
    return "--detect-local-mode=InterfaceNamePrefix needs --pod-interface-name-prefix";
  }
  if (out.detectLocal == LocalDetectMode::BridgeInterface && out.podBridgeInterface.empty()) {
    return "--detect-local-mode=BridgeInterface needs --pod-bridge-interface";
  }
  for (const auto& text : snatAddresses) {
    auto a = IpAddr::parse(text);
    if (!a) return fmt::format("--snat-address: \"{}\" is not an IP address", text);
    if (out.snatAddress(a->family)) {
      return fmt::format("--snat-address: more than one {} address", familyName(a->family));
    }
    out.snatAddresses.push_back(*a);
  }
  for (const auto& text : nodePortAddresses) {
    if (text == "primary") {
      out.nodePortPrimaryOnly = true;
      continue;
    }
    auto c = Cidr::parse(text);
    if (!c)
      return fmt::format("--nodeport-addresses: \"{}\" is neither a CIDR nor \"primary\"", text);
    // A NodePort reached on 127.0.0.1 would be DNATed to a pod elsewhere with a loopback source
    // the kernel drops as martian unless route_localnet is opened to the whole node (kube-proxy's
    // iptables mode did that; its nftables and IPVS modes do not serve localhost NodePorts).
    // Broader CIDRs are fine: loopback addresses in them are simply not NodePort addresses.
    const bool loopbackOnly = c->addr.family == IpFamily::V4
                                  ? c->prefixLen >= 8 && c->addr.bytes[0] == 127
                                  : c->prefixLen == 128 && *c == *Cidr::parse("::1/128");
    if (loopbackOnly) {
      return fmt::format(
          "--nodeport-addresses: \"{}\" selects only loopback addresses; NodePorts on localhost "
          "are not supported (as in kube-proxy's nftables and IPVS modes): use the node's own "
          "addresses",
          text);
    }
    out.nodePortAddresses.push_back(*c);
  }
  if (masqueradeBit < 0 || masqueradeBit > 31) {
    return fmt::format("--masquerade-bit: {} is outside 0..31", masqueradeBit);
  }
  out.masqueradeMark = 1u << masqueradeBit;
  return "";
}

}  // namespace sliceproxy::proxier
