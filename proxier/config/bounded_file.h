#pragma once
// Reading a file whose content comes from outside (a manifest, a configuration, a kubeconfig, a
// token) without letting it decide how much memory or time the read takes: only regular files
// (a FIFO would block, /dev/zero would never end), and only up to a size limit checked before
// reading and again while reading (the file may grow in between).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace sliceproxy::proxier {

struct BoundedRead {
  std::optional<std::string> text;  // set on success
  std::string error;                // otherwise: why, without the path (the caller names it)
  bool tooLarge = false;            // the refusal was the size limit (not worth retrying)
  bool notRegular = false;          // a directory, FIFO, socket or device
  // The failure may pass by itself (out of descriptors or memory, I/O error): worth a retry.
  // Missing files, symlink loops and permissions are not.
  bool transient = false;
};

// Follows symlinks. Never blocks on a FIFO.
BoundedRead readBoundedFile(const std::filesystem::path& path, uint64_t maxBytes);

}  // namespace sliceproxy::proxier
