#!/usr/bin/env bash
# Runs a script inside a Debian kernel booted under qemu, with this machine's root file system
# shared read-only over 9p: the guest sees the same binaries, libraries and checkout at the same
# paths, but has its own kernel, so tests can use kernel features this host's kernel lacks
# (IPVS, the dummy driver, ...). The script's output goes to the console; its exit code is ours.
#
#   tests/qemu/vm.sh [--modules "ip_vs dummy ..."] SCRIPT [ARG...]
#
# --modules: loaded (with their dependencies) from the Debian kernel before the script runs; what
# the kernel asks for on demand (nft expressions, link types, socket families) loads as well.
# In the guest: /tmp and /run are empty tmpfs, /proc /sys /dev are the guest's own, everything
# else is the host's, read-only; this checkout is shared again at its own path, so a checkout
# (and its build directory) under /tmp or /run, as in CI's clean clones, is visible too. SLICEPROXY_VM_* variables from the caller's environment are
# passed through, and the guest sees SLICEPROXY_VM_KVER and SLICEPROXY_VM_MODDIR (for
# `modprobe -d "$SLICEPROXY_VM_MODDIR" -S "$SLICEPROXY_VM_KVER" NAME`).
#
# The kernel is Debian's linux-image-*-amd64 (the version linux-image-amd64 points to),
# downloaded once with apt-get into $SLICEPROXY_QEMU_CACHE (default /var/cache/sliceproxy/qemu)
# and unpacked there. Needs: qemu-system-x86, busybox-static, kmod, apt (packaging/install-deps.sh).
# Runs under software emulation (TCG) with one virtual CPU (SLICEPROXY_QEMU_SMP for more); a boot
# takes a few seconds.
set -euo pipefail

modules=""
if [ "${1:-}" = "--modules" ]; then
  modules="$2"
  shift 2
fi
if [ $# -lt 1 ]; then
  echo "usage: $0 [--modules \"mod ...\"] SCRIPT [ARG...]" >&2
  exit 2
fi
script="$(realpath "$1")"
shift

cache="${SLICEPROXY_QEMU_CACHE:-/var/cache/sliceproxy/qemu}"
timeout_s="${SLICEPROXY_QEMU_TIMEOUT:-300}"
for tool in qemu-system-x86_64 busybox depmod modprobe apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "vm.sh: $tool is not installed (packaging/install-deps.sh)" >&2; exit 1; }
done

# --- the kernel, once ---------------------------------------------------------------------------
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
pkg="$(kernel_package)"
if [ -z "$pkg" ]; then
  # No package lists: use an unpacked kernel if there is one, else fetch the lists.
  pkg="$(ls -d "$cache"/linux-image-*-amd64 2>/dev/null | head -1 | xargs -r basename)"
  if [ -z "$pkg" ]; then
    apt-get update -qq >&2
    pkg="$(kernel_package)"
  fi
fi
[ -n "$pkg" ] || { echo "vm.sh: cannot tell which linux-image package linux-image-amd64 means (run apt-get update)" >&2; exit 1; }
kver="${pkg#linux-image-}"
root="$cache/$pkg"
if [ ! -f "$root/.ready" ]; then
  echo "vm.sh: fetching and unpacking $pkg into $cache" >&2
  rm -rf "$root" "$cache"/"$pkg"_*.deb
  (cd "$cache" && apt-get download -q "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2 || true)
  deb="$(ls "$cache"/"$pkg"_*.deb 2>/dev/null | head -1)"
  [ -n "$deb" ] || { echo "vm.sh: apt-get download $pkg failed" >&2; exit 1; }
  mkdir -p "$root"
  dpkg-deb -x "$deb" "$root"
  depmod -b "$root" "$kver"
  rm -f "$deb"
  touch "$root/.ready"
fi
vmlinuz="$root/boot/vmlinuz-$kver"
moddir="$root"

# --- a per-run initramfs: busybox, the modules to reach the 9p root, and /init --------------------
job="$(mktemp -d "$cache/job.XXXXXX")"
flock -u 9
trap 'rm -rf "$job"' EXIT
mkdir -p "$job/initramfs/bin" "$job/initramfs/mod"
cp "$(command -v busybox)" "$job/initramfs/bin/busybox"
n=0
declare -A seen=()
for m in virtio_pci 9pnet_virtio 9p; do
  # In dependency order; modprobe takes one module name per call (the rest would be parameters).
  while read -r _ path _; do
    [ -z "${seen[$path]:-}" ] || continue
    seen[$path]=1
    n=$((n + 1))
    name="$(printf '%02d-%s' "$n" "$(basename "$path" .xz)")"
    case "$path" in
      *.xz) xz -dc "$path" > "$job/initramfs/mod/$name" ;;
      *) cp "$path" "$job/initramfs/mod/$name" ;;
    esac
  done < <(modprobe -d "$moddir" -S "$kver" --show-depends "$m" | grep '^insmod ')
done

{
  echo "export SLICEPROXY_VM_KVER='$kver' SLICEPROXY_VM_MODDIR='$moddir'"
  env | grep '^SLICEPROXY_VM_' | grep -v -e '^SLICEPROXY_VM_KVER=' -e '^SLICEPROXY_VM_MODDIR=' |
    sed "s/'/'\\\\''/g; s/=\\(.*\\)/='\\1'/; s/^/export /" || true
  echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  for m in $modules; do echo "modprobe -d '$moddir' -S '$kver' $m || exit 97"; done
  printf 'exec %q' "$script"
  for a in "$@"; do printf ' %q' "$a"; done
  echo
} > "$job/initramfs/job.sh"

# Modules the guest asks for on demand (an nft expression, a link type, a socket family) load too:
# the kernel runs this from the initramfs, so it enters the host's root to run its modprobe on
# the Debian kernel's modules.
cat > "$job/initramfs/bin/guest-modprobe" <<MODPROBE
#!/bin/sh
exec chroot /newroot /sbin/modprobe -d '$moddir' -S '$kver' "\$@"
MODPROBE
chmod +x "$job/initramfs/bin/guest-modprobe"

checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
echo "$checkout" > "$job/initramfs/checkout-path"

cat > "$job/initramfs/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in /mod/*; do insmod "$m" || echo "vm: insmod $m failed"; done
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostroot /newroot; then
  for d in proc sys dev tmp run; do mount -t tmpfs none /newroot/$d 2>/dev/null; done
  co="$(cat /checkout-path)"
  mkdir -p "/newroot$co" 2>/dev/null
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose checkout "/newroot$co" ||
    echo "vm: mounting the checkout $co failed"
  umount /newroot/proc /newroot/sys /newroot/dev
  mount -t proc proc /newroot/proc
  mount -t sysfs sys /newroot/sys
  mount -t devtmpfs dev /newroot/dev
  echo /bin/guest-modprobe > /proc/sys/kernel/modprobe
  cp /job.sh /newroot/run/sliceproxy-vm-job.sh
  chroot /newroot /bin/sh /run/sliceproxy-vm-job.sh < /dev/console > /dev/console 2>&1
  rc=$?
else
  echo "vm: mounting the host root over 9p failed"
  rc=98
fi
echo "SLICEPROXY-VM-EXIT rc=$rc"
poweroff -f
INIT
chmod +x "$job/initramfs/init" "$job/initramfs/job.sh"
(cd "$job/initramfs" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$job/initramfs.gz")

# Software emulation by default: KVM inside this project's (nested) machines fails or hangs at
# boot; SLICEPROXY_QEMU_ACCEL=kvm tries it where it works.
accel=tcg cpu=max
if [ "${SLICEPROXY_QEMU_ACCEL:-}" = "kvm" ]; then accel=kvm cpu=host; fi
# One virtual CPU by default: CTest runs two guests side by side on a 2-core machine.
smp="${SLICEPROXY_QEMU_SMP:-1}"

set +e
timeout "$timeout_s" qemu-system-x86_64 \
  -machine q35,accel="$accel" -cpu "$cpu" -m 1024 -smp "$smp" \
  -nodefaults -no-reboot -display none -serial stdio -monitor none \
  -kernel "$vmlinuz" -initrd "$job/initramfs.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$checkout",mount_tag=checkout,security_model=none,readonly=on,multidevs=remap \
  | tee "$job/console.log" | grep -v -e '^SLICEPROXY-VM-EXIT' -e 'reboot: Power down'
qemu_rc=${PIPESTATUS[0]}
set -e
rc="$(sed -n 's/^SLICEPROXY-VM-EXIT rc=\([0-9]*\).*/\1/p' "$job/console.log" | tail -1)"
if [ -z "$rc" ]; then
  echo "vm.sh: the guest did not report an exit code (qemu exited with $qemu_rc; timeout ${timeout_s}s)" >&2
  exit 1
fi
exit "$rc"
