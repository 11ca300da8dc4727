#pragma once
// The ports some packet-path frontend listens on, as one bit per port in np_fe_ports, so the
// programs look in np_frontends only for packets to such a port (a reply to a client's
// ephemeral port would otherwise cost a random bucket of that table). Counted here, per port:
// a bit is set before the first frontend of its port is written and cleared after the last is
// deleted, so the programs never miss a frontend.

#include <array>
#include <cstdint>
#include <map>

namespace sliceproxy::backends::ebpf {

class FrontendPorts {
 public:
  // fd: the np_fe_ports array map. Bits already set there (a previous run's) stay set until
  // their port's count here goes from 1 to 0: a stale bit costs a lookup, a missing one a
  // frontend.
  explicit FrontendPorts(int fd);
  // port in network order, as in np_fe_key. Throw naming the map on a kernel error.
  void add(uint16_t port);
  void remove(uint16_t port);
  // Sets the port's bit without counting it (a frontend a previous run wrote): it stays set.
  void keep(uint16_t port);

 private:
  void write(uint32_t word);

  int fd_;
  std::array<uint32_t, 2048> words_{};
  std::map<uint16_t, uint32_t> counts_;
};

}  // namespace sliceproxy::backends::ebpf
