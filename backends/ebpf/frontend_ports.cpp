#include "backends/ebpf/frontend_ports.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace sliceproxy::backends::ebpf {

FrontendPorts::FrontendPorts(int fd) : fd_(fd) {
  for (uint32_t w = 0; w < words_.size(); ++w) {
    if (bpf_map_lookup_elem(fd_, &w, &words_[w]) != 0) words_[w] = 0;
  }
}

void FrontendPorts::add(uint16_t port) {
  const uint16_t p = ntohs(port);
  if (counts_[p]++ > 0) return;
  const uint32_t bit = 1u << (p & 31);
  if (words_[p >> 5] & bit) return;
  words_[p >> 5] |= bit;
  write(p >> 5);
}

void FrontendPorts::keep(uint16_t port) {
  const uint16_t p = ntohs(port);
  const uint32_t bit = 1u << (p & 31);
  if (words_[p >> 5] & bit) return;
  words_[p >> 5] |= bit;
  write(p >> 5);
}

void FrontendPorts::remove(uint16_t port) {
  const uint16_t p = ntohs(port);
  auto it = counts_.find(p);
  if (it == counts_.end() || --it->second > 0) return;
  counts_.erase(it);
  words_[p >> 5] &= ~(1u << (p & 31));
  write(p >> 5);
}

void FrontendPorts::write(uint32_t word) {
  if (bpf_map_update_elem(fd_, &word, &words_[word], BPF_ANY) != 0) {
    const int err = errno;
    throw std::runtime_error(fmt::format("np_fe_ports: writing the bits of ports {}-{}: {}",
                                         word * 32, word * 32 + 31, std::strerror(err)));
  }
}

}  // namespace sliceproxy::backends::ebpf
