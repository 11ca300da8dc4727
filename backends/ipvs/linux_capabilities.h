#pragma once
// What the IPVS backend needs from the process: IPVS, links and addresses over netlink are all
// CAP_NET_ADMIN; the IPVS sysctls are root's files and need no capability of their own.

#include <linux/capability.h>

#include "proxier/core/linux_capabilities.h"

namespace sliceproxy::backends::ipvs {

inline constexpr proxier::LinuxCapability kLinuxCapabilities[] = {
    {CAP_NET_ADMIN, "CAP_NET_ADMIN", "IPVS, the dummy link and its addresses over netlink"},
};

}  // namespace sliceproxy::backends::ipvs
