#pragma once
// Manifest files: which names are manifests, and decoding one by its format.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "slice-watch/decoded_object.h"

namespace sliceproxy::slicewatch {

enum class ManifestFormat { Yaml, Json };

// *.yaml, *.yml and *.json; nullopt for anything else, including dotfiles (editors' swap and
// temporary files, and Kubernetes' ..data links) and backups ending in ~.
std::optional<ManifestFormat> manifestFormat(std::string_view fileName);

std::vector<DecodeResult> decodeManifest(std::string_view text, ManifestFormat format,
                                         const DecodeOptions& opts);

// --manifest-max-file-bytes' default: a slice of 100,000 endpoints in one YAML file is ~20 MiB.
inline constexpr uint64_t kDefaultManifestMaxFileBytes = 64ull << 20;

// Reads and decodes one file of at most maxBytes. A file that cannot be read for a passing
// reason (EMFILE, ENOMEM, EIO) is one read_error Rejection (worth retrying); one that is too
// large, not a regular file, a dangling link or a loop is one file_refused Rejection. Either
// names the file; the file is never read past maxBytes.
std::vector<DecodeResult> decodeManifestFile(const std::filesystem::path& path,
                                             const DecodeOptions& opts, uint64_t maxBytes);

}  // namespace sliceproxy::slicewatch
