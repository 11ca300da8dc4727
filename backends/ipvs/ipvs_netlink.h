#pragma once
// A client of the kernel's generic netlink family "IPVS": virtual services and their real
// servers, added, changed, deleted and listed, one request each (what ipvsadm does, without
// exec'ing it). Every error names what was being programmed and what the kernel answered.

#include <cstdint>
#include <string>
#include <vector>

#include "backends/ipvs/netlink_socket.h"
#include "proxier/model/ip.h"

namespace sliceproxy::backends::ipvs {

// The header of a generic netlink request to `family`: the IPVS family, or GENL_ID_CTRL to
// resolve it (each answers to its own version).
nlmsghdr* genlHeader(char* buf, uint16_t family, uint8_t cmd, uint16_t flags);

// A virtual service by address (fwmark services are not used by sliceproxy).
struct VirtualServiceKey {
  proxier::IpAddr addr;
  uint16_t protocol = 0;    // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP
  uint16_t port = 0;        // host order
  std::string str() const;  // "TCP 10.96.0.1:80"
  friend bool operator==(const VirtualServiceKey&, const VirtualServiceKey&) = default;
  friend auto operator<=>(const VirtualServiceKey&, const VirtualServiceKey&) = default;
};

struct VirtualService {
  VirtualServiceKey key;
  std::string scheduler = "rr";
  uint32_t flags = 0;       // IP_VS_SVC_F_*: IP_VS_SVC_F_PERSISTENT for ClientIP affinity
  uint32_t timeout = 0;     // persistence, seconds
  std::string str() const;  // key plus scheduler, flags, timeout
  bool sameSettings(const VirtualService& o) const {
    return scheduler == o.scheduler && flags == o.flags && timeout == o.timeout;
  }
};

struct RealServerKey {
  proxier::IpAddr addr;
  uint16_t port = 0;  // host order
  std::string str() const;
  friend bool operator==(const RealServerKey&, const RealServerKey&) = default;
  friend auto operator<=>(const RealServerKey&, const RealServerKey&) = default;
};

struct RealServer {
  RealServerKey key;
  uint32_t weight = 1;
  uint32_t fwdMethod = 0;  // IP_VS_CONN_F_MASQ; only masquerade is programmed
  // Filled by listRealServers only.
  uint32_t activeConns = 0, inactiveConns = 0;
};

class IpvsNetlink {
 public:
  IpvsNetlink();
  // Resolves the family id (CTRL_CMD_GETFAMILY). Returns "" or why not; a kernel without IPVS
  // answers ENOENT, which the message says.
  std::string open();
  bool opened() const { return family_ != 0; }

  std::string addService(const VirtualService& svc);
  std::string editService(const VirtualService& svc);
  // Deleting a virtual service deletes its real servers with it.
  std::string deleteService(const VirtualServiceKey& key);
  std::string addRealServer(const VirtualServiceKey& svc, const RealServer& rs);
  std::string editRealServer(const VirtualServiceKey& svc, const RealServer& rs);
  std::string deleteRealServer(const VirtualServiceKey& svc, const RealServerKey& rs);

  std::string listServices(std::vector<VirtualService>& out);
  std::string listRealServers(const VirtualServiceKey& svc, std::vector<RealServer>& out);

  // Requests sent since construction, for tests and metrics.
  uint64_t requests() const { return requests_; }

 private:
  std::string serviceRequest(uint8_t cmd, const VirtualService& svc, bool full,
                             const std::string& what);
  std::string destRequest(uint8_t cmd, const VirtualServiceKey& svc, const RealServer& rs,
                          bool full, const std::string& what);
  NetlinkSocket sock_;
  uint16_t family_ = 0;
  uint64_t requests_ = 0;
};

}  // namespace sliceproxy::backends::ipvs
