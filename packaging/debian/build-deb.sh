#!/usr/bin/env bash
# Builds the sliceproxy Debian package (.deb) with dpkg-buildpackage and the project's CMake.
#
#   packaging/debian/build-deb.sh [--out DIR] [--prebuilt BUILD_DIR] [--version VERSION]
#
#   --out DIR            where the .deb files go (default: build-deb/ in the checkout)
#   --prebuilt BUILD_DIR package the sliceproxy binary of an existing CMake build directory of
#                        this checkout instead of compiling it again
#   --version VERSION    package version to build instead of debian/changelog's newest (adds a
#                        changelog entry; used to test upgrades from one version to the next)
#
# Debian's tools want debian/ at the root of the source tree, and this project keeps the root
# layout fixed, so the package is built from a copy of the source (a couple of MB) with
# packaging/debian/debian/ placed at its root.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/build-deb
prebuilt=""
version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --prebuilt) prebuilt=$(cd "$2" && pwd); shift 2 ;;
    --version) version=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--prebuilt BUILD_DIR] [--version VERSION]" >&2; exit 2 ;;
  esac
done

for tool in dpkg-buildpackage dh help2man cmake ninja; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-deb: $tool is missing; run packaging/install-deps.sh" >&2
    exit 1
  fi
done
if [ -n "$prebuilt" ]; then
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$prebuilt/CMakeCache.txt" 2>/dev/null || true)
  if [ "$home" != "$root" ]; then
    echo "build-deb: $prebuilt is not a CMake build directory of $root" >&2
    exit 1
  fi
  if [ ! -x "$prebuilt/sliceproxy" ]; then
    echo "build-deb: $prebuilt/sliceproxy is not built (cmake --build $prebuilt --target sliceproxy)" >&2
    exit 1
  fi
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/sliceproxy"
src=$stage/sliceproxy
# Build directories, caches and version control stay behind; so does the output directory when
# it lies inside the checkout.
excludes=(--exclude=./.git --exclude='./build*' --exclude=./.cache)
case "$out" in "$root"/*) excludes+=("--exclude=./${out#"$root"/}") ;; esac
tar -C "$root" "${excludes[@]}" -cf - . | tar -C "$src" -xf -
cp -a "$root/packaging/debian/debian" "$src/debian"

if [ -n "$version" ]; then
  entry=$(mktemp)
  {
    echo "sliceproxy ($version) unstable; urgency=medium"
    echo
    echo "  * Local build $version."
    echo
    echo " -- sliceproxy developers <dev@sliceproxy.invalid>  $(date -R)"
    echo
    cat "$src/debian/changelog"
  } >"$entry"
  mv "$entry" "$src/debian/changelog"
fi

started=$(date +%s)
(cd "$src" && SLICEPROXY_PREBUILT="$prebuilt" dpkg-buildpackage -b --no-sign -j"$(nproc)") \
  >"$stage/dpkg-buildpackage.log" 2>&1 || {
  tail -n 60 "$stage/dpkg-buildpackage.log" >&2
  echo "build-deb: dpkg-buildpackage failed; full log: $stage/dpkg-buildpackage.log" >&2
  exit 1
}
shopt -s nullglob
built=("$stage"/*.deb "$stage"/*.ddeb "$stage"/*.changes "$stage"/*.buildinfo)
mv "${built[@]}" "$out/"
for f in "${built[@]}"; do
  case "$f" in */sliceproxy_*.deb) echo "$out/$(basename "$f")" ;; esac
done
echo "build-deb: built in $(($(date +%s) - started))s (log: $stage/dpkg-buildpackage.log)" >&2
