// Forwarding header: the libnftnl plumbing moved to backends/nftnl/. Kept only
// for proxier/cmd/kube_proxy_cleanup, which this change may not touch; new code
// includes backends/nftnl/transaction.h directly.
#pragma once

#include "backends/nftnl/transaction.h"
