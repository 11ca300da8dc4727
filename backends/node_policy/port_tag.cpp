// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/port_tag.h"

#include <fmt/format.h>

namespace sliceproxy::backends::nft {

std::string portChainTag(const proxier::ServicePortInfo& info) {
  std::string tag = fmt::format("{}/{}/{}/{}", info.key.service.ns, info.key.service.name,
                                info.key.port.portName.empty() ? "-" : info.key.port.portName,
                                protocolName(info.key.port.protocol));
  if (tag.size() > 200) tag.resize(200);
  return tag;
}

}  // namespace sliceproxy::backends::nft
