#!/usr/bin/env bash
# The one list of everything sliceproxy needs on Debian 12, for building, testing and running.
# Idempotent: packages already present are left alone, so re-running costs one dpkg query.
set -euo pipefail

packages=(
  # toolchain (clang also compiles the BPF programs of the eBPF backend; bpftool, below,
  # generates vmlinux.h and their skeletons during the build)
  build-essential g++ cmake ninja-build pkg-config clang llvm clang-format git
  # libraries
  libbpf-dev libelf-dev zlib1g-dev libnftnl-dev libmnl-dev libnetfilter-conntrack-dev
  libboost1.81-dev libboost-json1.81-dev libssl-dev libsimdjson-dev libyaml-cpp-dev libcli11-dev libfmt-dev libspdlog-dev
  prometheus-cpp-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3 python3-yaml python3-prometheus-client
  # the test Kubernetes API server (certificates) and a real client it is checked with
  openssl python3-kubernetes
  # kernel tools used by tests, the demo and the benchmark harness
  bpftool nftables conntrack iproute2 iptables procps ipset
  # the benchmark harness's plots (bench/run)
  gnuplot-nox
  # tests/qemu/vm.sh: a Debian kernel under qemu, for kernel features this host may lack (IPVS)
  qemu-system-x86 busybox-static kmod ipvsadm
  # bare-metal packaging: the Debian package and its checks, the systemd unit's checks, the OCI
  # image built without a daemon
  debhelper dpkg-dev help2man lintian man-db systemd systemd-container debootstrap umoci
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (it calls apt-get)" >&2
  exit 1
fi

# kubectl for the test API server's checks: Debian's kubernetes-client, unless a kubectl is
# already installed (another package's /usr/bin/kubectl would conflict with it).
if ! command -v kubectl >/dev/null 2>&1; then
  packages+=(kubernetes-client)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
