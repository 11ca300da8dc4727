#pragma once
// What the nftables backend needs from the process, measured by running the daemon with one
// capability less at a time (tests/kernel/capabilities_test.py): the conntrack sysctls are root's
// files and need no capability of their own.

#include <linux/capability.h>

#include "proxier/core/linux_capabilities.h"

namespace sliceproxy::backends::nft {

inline constexpr proxier::LinuxCapability kLinuxCapabilities[] = {
    {CAP_NET_ADMIN, "CAP_NET_ADMIN", "nftables and conntrack over netlink"},
};

}  // namespace sliceproxy::backends::nft
