#pragma once
// Manifest files: which names are manifests, and decoding one by its format.

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

// Reads and decodes one file. An unreadable file is one read_error Rejection.
std::vector<DecodeResult> decodeManifestFile(const std::filesystem::path& path,
                                             const DecodeOptions& opts);

}  // namespace sliceproxy::slicewatch
