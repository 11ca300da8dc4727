#!/usr/bin/env bash
# Builds sliceproxy's OCI image here, with no container daemon and no registry: a root file
# system is assembled in a directory and packed into an OCI image layout with umoci.
#
#   packaging/image/build-oci.sh [--minimal] [--deb FILE | --prebuilt BUILD_DIR] [--out DIR]
#
#   (default)            a minimal Debian 12 root (debootstrap --variant=minbase, from this
#                        machine's configured apt sources, with its updates and security
#                        fixes) with the sliceproxy package installed by apt, and nftables,
#                        iptables and conntrack for inspecting a node; a few minutes, most of
#                        it downloading
#   --minimal            only the package's files, the binary's shared libraries (as ldd finds
#                        them on this Debian 12 machine) and their copyright files; seconds,
#                        no network
#   --deb FILE           the sliceproxy .deb to put in the image (default: build one with
#                        packaging/debian/build-deb.sh, from BUILD_DIR with --prebuilt)
#   --out DIR            work and output directory (default: build-oci/ in the checkout)
#
# The image is left in DIR/oci (an OCI image layout, tag = the package version) and, for
# tools that want one file, DIR/sliceproxy-oci.tar; copy it to a registry or load it with, for
# example, `skopeo copy oci:DIR/oci:TAG docker://...` or `podman load -i DIR/sliceproxy-oci.tar`.
# Its entrypoint is /usr/bin/sliceproxy.
set -euo pipefail
checkout=$(cd "$(dirname "$0")/../.." && pwd)
out=$checkout/build-oci
mode=debian
deb=""
prebuilt=""
usage() {
  echo "usage: $0 [--minimal] [--deb FILE | --prebuilt BUILD_DIR] [--out DIR]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --minimal) mode=minimal; shift ;;
    --deb) [ $# -ge 2 ] || usage; deb=$(realpath "$2"); shift 2 ;;
    --prebuilt) [ $# -ge 2 ] || usage; prebuilt=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    *) usage ;;
  esac
done

die() {
  echo "build-oci: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root (file ownership in the image, chroot)"
tools=(umoci dpkg-deb ldd tar)
[ "$mode" = debian ] && tools+=(debootstrap chroot)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || die "$tool is missing; run packaging/install-deps.sh"
done

started=$(date +%s)
phase_start=$started
phase() {
  local now
  now=$(date +%s)
  echo "build-oci: $1 ($((now - phase_start))s)" >&2
  phase_start=$now
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -z "$deb" ]; then
  deb=$(bash "$checkout/packaging/debian/build-deb.sh" --out "$out/deb" \
    ${prebuilt:+--prebuilt "$prebuilt"} | tail -n 1)
  phase "built $deb"
fi
[ -f "$deb" ] || die "$deb is not a file"
version=$(dpkg-deb --field "$deb" Version)
arch=$(dpkg-deb --field "$deb" Architecture)
# OCI tags allow [A-Za-z0-9_.-]; Debian versions may also hold + and ~.
tag=${version//[^A-Za-z0-9_.-]/_}

rootfs=$out/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs"

# This machine's apt source for a suite of its own Debian release (bookworm, bookworm-updates,
# bookworm-security): the first "deb" source naming that suite, from deb822 .sources files
# first, then one-line .list files. The image is built from the mirror the machine already
# trusts, and no host name is written down here.
host_source() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$suite" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && uris != "") {
          split(uris, u, " "); print u[1]; found = 1; exit
        }
        types = suites = uris = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
      END { if (!found) flush() }' "$f"
  done | head -n 1 | grep . && return 0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI suite components...
    sed -E 's/\[[^]]*\]//' "$f" | awk -v want="$suite" '$1 == "deb" && $3 == want { print $2; exit }'
  done | head -n 1 | grep .
}

# Tools an operator wants on a node, beside the package (the Debian root only; keep in step
# with packaging/Containerfile's run-time stage).
node_tools=(nftables iptables conntrack)

case "$mode" in
  minimal)
    # usrmerge layout, as on Debian 12, so the binary's interpreter path resolves.
    mkdir -p "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/usr/lib" "$rootfs/usr/lib64" \
      "$rootfs/etc" "$rootfs/tmp" "$rootfs/var/lib/sliceproxy"
    for d in bin sbin lib lib64; do ln -s "usr/$d" "$rootfs/$d"; done
    chmod 1777 "$rootfs/tmp"
    dpkg-deb --extract "$deb" "$rootfs"
    # Every shared library the binary loads (and the dynamic loader), copied to the directory
    # the loader searches, with the copyright file of the Debian package it comes from.
    libs=$(ldd "$rootfs/usr/bin/sliceproxy" | awk '/=> \// { print $3 } /^\t\// { print $1 }')
    [ -n "$libs" ] || die "ldd found no libraries for sliceproxy"
    for lib in $libs; do
      dest=$rootfs$(readlink -f "$(dirname "$lib")")/$(basename "$lib")
      mkdir -p "$(dirname "$dest")"
      cp -L "$lib" "$dest"
      # dpkg knows a library by the path its package ships (/lib/... before usrmerge).
      pkg=$(dpkg-query --search "$lib" 2>/dev/null | head -n 1 | cut -d: -f1) ||
        pkg=$(dpkg-query --search "$(readlink -f "$lib")" | head -n 1 | cut -d: -f1)
      [ -n "$pkg" ] || die "no Debian package owns $lib"
      if [ -f "/usr/share/doc/$pkg/copyright" ]; then
        install -D -m 0644 "/usr/share/doc/$pkg/copyright" "$rootfs/usr/share/doc/$pkg/copyright"
      fi
    done
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\n' >"$rootfs/etc/group"
    phase "minimal root: package, $(echo "$libs" | wc -w) shared libraries"
    ;;
  debian)
    . /etc/os-release
    codename=${VERSION_CODENAME:?/etc/os-release has no VERSION_CODENAME}
    mirror=$(host_source "$codename") || die "no apt source for $codename in /etc/apt/sources.list*"
    debootstrap --variant=minbase "$codename" "$rootfs" "$mirror" >"$out/debootstrap.log" 2>&1 || {
      tail -n 30 "$out/debootstrap.log" >&2
      die "debootstrap from $mirror failed (log: $out/debootstrap.log)"
    }
    phase "debootstrap --variant=minbase $codename from $mirror"
    # The release with its updates and security fixes, from the same sources as this machine.
    for suite in "$codename" "$codename-updates" "$codename-security"; do
      uri=$(host_source "$suite") && echo "deb $uri $suite main"
    done >"$rootfs/etc/apt/sources.list"
    cp "$deb" "$rootfs/tmp/sliceproxy.deb"
    # apt resolves the package's Depends (computed by dpkg-shlibdeps, some of them virtual
    # packages) and runs its maintainer scripts in the root.
    {
      chroot "$rootfs" apt-get update -q &&
        chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q &&
        chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
          --no-install-recommends /tmp/sliceproxy.deb "${node_tools[@]}" &&
        chroot "$rootfs" apt-get clean
    } >"$out/apt.log" 2>&1 || {
      tail -n 30 "$out/apt.log" >&2
      die "installing the package in the root failed (log: $out/apt.log)"
    }
    # What only this machine or the container runtime should provide, and caches.
    rm -rf "$rootfs/tmp/sliceproxy.deb" "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
      "$rootfs"/var/log/apt/* "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
    phase "installed $(basename "$deb") and ${node_tools[*]} with apt"
    ;;
esac

oci=$out/oci
bundle=$out/bundle
rm -rf "$oci" "$bundle"
umoci init --layout "$oci"
umoci new --image "$oci:$tag"
umoci unpack --image "$oci:$tag" "$bundle" >/dev/null
tar -C "$rootfs" -cf - . | tar -C "$bundle/rootfs" -xpf -
umoci repack --image "$oci:$tag" --history.created_by="packaging/image/build-oci.sh ($mode)" \
  "$bundle"
umoci config --image "$oci:$tag" --architecture="$arch" --os=linux \
  --config.entrypoint=/usr/bin/sliceproxy --config.workingdir=/ \
  --config.label=org.opencontainers.image.title=sliceproxy \
  --config.label=org.opencontainers.image.version="$version" \
  --config.label=org.opencontainers.image.licenses=Apache-2.0 \
  --config.label=org.opencontainers.image.description="sliceproxy, a kube-proxy replacement ($mode root)" \
  --history.created_by="umoci config (entrypoint /usr/bin/sliceproxy)"
umoci gc --layout "$oci"
rm -rf "$bundle" "$rootfs"
tar -C "$oci" -cf "$out/sliceproxy-oci.tar" .
phase "packed with umoci"

echo "build-oci: $mode image $tag built in $(($(date +%s) - started))s: $oci:$tag, $out/sliceproxy-oci.tar ($(du -h "$out/sliceproxy-oci.tar" | cut -f1))" >&2
echo "$oci:$tag"
