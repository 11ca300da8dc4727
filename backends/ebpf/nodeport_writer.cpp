#include "backends/ebpf/nodeport_writer.h"

#include <fmt/format.h>
#include <netinet/in.h>

#include <cstring>
#include <stdexcept>

#include "backends/ebpf/maglev.h"

namespace sliceproxy::backends::ebpf {

using proxier::EndpointKey;

NodePortWriter::NodePortWriter(NodePortPrograms& progs, std::vector<proxier::IpAddr> nodeAddresses,
                               uint32_t maglevTableSize)
    : progs_(progs), nodeAddresses_(std::move(nodeAddresses)), maglevTableSize_(maglevTableSize) {}

uint32_t NodePortWriter::acquire(const EndpointKey& e) {
  BackendRef& r = backendIds_[e];
  if (r.refs++ == 0) {
    r.id = nextBackendId_++;
    np_backend b{};
    std::memcpy(b.addr, e.ip.bytes.data(), e.ip.size());
    b.port = htons(e.port);
    b.family = e.ip.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
    progs_.setBackend(r.id, b);
  }
  return r.id;
}

void NodePortWriter::release(const EndpointKey& e) {
  auto it = backendIds_.find(e);
  if (it == backendIds_.end() || --it->second.refs > 0) return;
  progs_.removeBackend(it->second.id);
  backendIds_.erase(it);
}

std::string NodePortWriter::sync(const proxier::ServicePortView& v) {
  NodePortPlan plan = planNodePort(v, nodeAddresses_);
  if (plan.frontends.empty()) return remove(v.key());
  try {
    auto [it, created] = ports_.try_emplace(v.key());
    Port& p = it->second;
    np_frontend value = p.value;
    value.flags = plan.flags;
    uint32_t oldTable = 0;
    if (created || plan.backends != p.backends) {
      // A port keeps its table id while the size stays, so the swap is one map update.
      const uint32_t size =
          plan.backends.empty() ? 0 : maglevTableSizeFor(maglevTableSize_, plan.backends.size());
      if (created || (size != value.size && value.size != 0)) {
        if (!created) oldTable = value.table_id;
        value.table_id = nextTableId_++;
      }
      value.size = size;
      std::vector<EndpointKey> sorted = plan.backends;
      std::vector<uint32_t> ids;
      if (size != 0) {
        const std::vector<uint32_t> table = maglevTable(sorted, size);
        std::vector<uint32_t> idOf(sorted.size());
        for (size_t i = 0; i < sorted.size(); ++i) idOf[i] = acquire(sorted[i]);
        ids.resize(table.size());
        for (size_t i = 0; i < table.size(); ++i) ids[i] = idOf[table[i]];
      }
      progs_.setMaglevTable(value.table_id, ids);
    }
    for (const np_fe_key& k : plan.frontends) progs_.setFrontend(k, value);
    for (const np_fe_key& k : p.frontends) {
      if (!std::binary_search(plan.frontends.begin(), plan.frontends.end(), k)) {
        progs_.removeFrontend(k);
      }
    }
    if (oldTable != 0) progs_.removeMaglevTable(oldTable);
    if (plan.backends != p.backends) {
      for (const EndpointKey& e : p.backends) release(e);
    }
    p.frontends = std::move(plan.frontends);
    p.value = value;
    p.backends = std::move(plan.backends);
    return "";
  } catch (const std::exception& e) {
    return fmt::format("{}: {}", v.key().str(), e.what());
  }
}

std::string NodePortWriter::remove(const proxier::ServicePortKey& key) {
  auto it = ports_.find(key);
  if (it == ports_.end()) return "";
  try {
    for (const np_fe_key& k : it->second.frontends) progs_.removeFrontend(k);
    progs_.removeMaglevTable(it->second.value.table_id);
    for (const EndpointKey& e : it->second.backends) release(e);
    ports_.erase(it);
    return "";
  } catch (const std::exception& e) {
    return fmt::format("{}: {}", key.str(), e.what());
  }
}

std::pair<uint32_t, uint32_t> NodePortWriter::tableOf(const proxier::ServicePortKey& key) const {
  auto it = ports_.find(key);
  if (it == ports_.end()) return {0, 0};
  return {it->second.value.table_id, it->second.value.size};
}

}  // namespace sliceproxy::backends::ebpf
