#pragma once
// The dummy interface sliceproxy owns (kube-proxy's kube-ipvs0): every virtual service address
// is bound to it, so the kernel treats traffic to it as local and IPVS, at LOCAL_IN, sees it.
// Addresses are reference-counted by the backend and added or removed as services come and go.

#include <set>
#include <string>

#include "backends/ipvs/netlink_socket.h"
#include "proxier/model/ip.h"

namespace sliceproxy::backends::ipvs {

// 15 characters: IFNAMSIZ counts the terminating NUL.
inline constexpr const char* kDummyInterface = "sliceproxy-ipvs";

class DummyInterface {
 public:
  explicit DummyInterface(std::string name = kDummyInterface);
  // Creates the link if it is missing and reads the addresses it already has (a previous run's).
  // Returns "" or what failed.
  std::string ensure();
  const std::set<proxier::IpAddr>& addresses() const { return addrs_; }
  std::string addAddress(const proxier::IpAddr& a);
  std::string removeAddress(const proxier::IpAddr& a);
  // What another program removed since ensure(): the link (or it was created again under the same
  // name, another index) or some of the addresses added here; "" when nothing or when the
  // lookup fails. A link lookup and a dump of the node's addresses.
  std::string missing();
  // Deletes the link (and so every address on it); "" when there is none.
  std::string remove();
  int index() const { return index_; }
  const std::string& name() const { return name_; }

 private:
  int lookup();  // fills index_ (0 if absent); returns 0 or an errno
  int listAddresses(std::set<proxier::IpAddr>& out);  // this link's; 0 or an errno
  std::string addressRequest(uint16_t type, const proxier::IpAddr& a);
  std::string name_;
  NetlinkSocket sock_;
  int index_ = 0;
  std::set<proxier::IpAddr> addrs_;
};

}  // namespace sliceproxy::backends::ipvs
