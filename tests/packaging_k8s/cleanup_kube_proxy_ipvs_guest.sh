#!/bin/sh
# Runs inside the qemu guest (tests/qemu/vm.sh, with ip_vs, ip_vs_rr and dummy loaded): this
# host's kernel has neither IPVS nor the dummy driver. Builds what kube-proxy's IPVS mode leaves
# (virtual services on addresses bound to the kube-ipvs0 dummy, a NodePort on a node address)
# next to things that must stay, runs `sliceproxy cleanup-kube-proxy`, and checks the result
# with ipvsadm and ip. Prints PASS/FAIL lines; exits non-zero on the first failure.
set -eu
BIN="${SLICEPROXY_VM_BIN:?SLICEPROXY_VM_BIN names the sliceproxy binary}"

fail() {
  echo "FAIL: $*"
  echo "--- ipvsadm -S -n:"; ipvsadm -S -n || true
  echo "--- ip link:"; ip -br link || true
  exit 1
}
pass() { echo "PASS: $*"; }
expect_out() {  # expect_out TEXT: the last cleanup output contains TEXT
  printf '%s\n' "$out" | grep -qF -- "$1" || fail "output lacks \"$1\": $out"
}
cleanup() {
  out="$("$BIN" cleanup-kube-proxy "$@" 2>&1)" || fail "cleanup-kube-proxy $* exited $?: $out"
  printf '%s\n' "$out" | sed 's/^/    | /'
}

ip link set lo up

# 1. IPVS services and no kube-ipvs0: nothing says they are kube-proxy's, so they stay.
ipvsadm -A -t 192.168.60.1:80 -s rr
ipvsadm -a -t 192.168.60.1:80 -r 192.168.60.10:80 -m
before="$(ipvsadm -S -n)"
cleanup
expect_out "checked: IPVS: 1 virtual services left in place: there is no kube-ipvs0 link"
[ "$(ipvsadm -S -n)" = "$before" ] || fail "IPVS changed without kube-ipvs0"
pass "without kube-ipvs0, IPVS services are left alone"

# 2. kube-proxy's IPVS mode: service addresses on kube-ipvs0, virtual services on them (IPv4
#    and IPv6, TCP and UDP), a NodePort on the node's address; one service in excludeCIDRs
#    (taken from the --config file); a user's dummy link.
ip link add kube-ipvs0 type dummy
ip addr add 10.96.0.1/32 dev kube-ipvs0
ip addr add 10.96.0.10/32 dev kube-ipvs0
ip -6 addr add fd00:96::1/128 dev kube-ipvs0
ip link add user-dummy0 type dummy
ip addr add 192.168.60.1/24 dev user-dummy0
ip link set user-dummy0 up
ipvsadm -A -t 10.96.0.1:443 -s rr
ipvsadm -a -t 10.96.0.1:443 -r 192.168.50.2:6443 -m
ipvsadm -a -t 10.96.0.1:443 -r 192.168.50.3:6443 -m
ipvsadm -A -u 10.96.0.10:53 -s rr
ipvsadm -a -u 10.96.0.10:53 -r 10.244.1.5:53 -m
ipvsadm -A -t '[fd00:96::1]:443' -s rr
ipvsadm -a -t '[fd00:96::1]:443' -r '[2001:db8::2]:6443' -m
ipvsadm -A -t 192.168.60.1:30080 -s rr
ipvsadm -a -t 192.168.60.1:30080 -r 10.244.1.6:8080 -m
ipvsadm -A -f 7 -s rr
ipvsadm -A -t 198.18.0.5:80 -s rr
ipvsadm -a -t 198.18.0.5:80 -r 10.1.1.1:80 -m
excluded="$(ipvsadm -S -n | grep -F 198.18.0.5:80)"
user_link="$(ip -d link show user-dummy0)"
[ "$(ipvsadm -S -n | grep -c '^-A')" = 7 ] || fail "setup: expected 7 virtual services"
cat > /run/kube-proxy-config.yaml <<'YAML'
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
ipvs:
  excludeCIDRs: [198.18.0.0/15]
YAML
cleanup --config /run/kube-proxy-config.yaml
expect_out "removed: IPVS: 6 virtual services"
expect_out "checked: IPVS: 1 virtual services in --ipvs-exclude-cidrs left in place"
expect_out "removed: dummy link kube-ipvs0"
[ "$(ipvsadm -S -n)" = "$excluded" ] || fail "IPVS after the cleanup is not just the excluded service"
! ip link show kube-ipvs0 >/dev/null 2>&1 || fail "kube-ipvs0 is still there"
[ "$(ip -d link show user-dummy0)" = "$user_link" ] || fail "user-dummy0 changed"
pass "kube-proxy's IPVS services and kube-ipvs0 removed; excluded service and user link intact"

# 3. Run again: nothing left of kube-proxy's, nothing changes (exclusion given as a flag).
cleanup --ipvs-exclude-cidrs 198.18.0.0/15
if printf '%s\n' "$out" | grep -q '^removed:'; then fail "second run removed something"; fi
[ "$(ipvsadm -S -n)" = "$excluded" ] || fail "second run changed IPVS"
pass "second run changes nothing"

# 4. --ipvs-without-kube-ipvs0 takes the remaining services even without kube-ipvs0.
cleanup --ipvs-without-kube-ipvs0
expect_out "removed: IPVS: 1 virtual services"
[ -z "$(ipvsadm -S -n)" ] || fail "--ipvs-without-kube-ipvs0 left services"
[ "$(ip -d link show user-dummy0)" = "$user_link" ] || fail "user-dummy0 changed"
pass "--ipvs-without-kube-ipvs0 removes every virtual service"

# 5. A kube-ipvs0 that is not a dummy is not kube-proxy's.
ip link add kube-ipvs0 type bridge
cleanup
expect_out "checked: link kube-ipvs0 left in place: it is a bridge device"
ip link show kube-ipvs0 >/dev/null || fail "the kube-ipvs0 bridge was removed"
pass "a kube-ipvs0 bridge stays"
ip link del kube-ipvs0

# 6. sliceproxy's IPVS backend runs here too (its link sliceproxy-ipvs): only the services on
#    kube-ipvs0's addresses are kube-proxy's; sliceproxy's own (on its link) and the NodePorts on
#    node addresses (which sliceproxy adopts) stay.
ip link add kube-ipvs0 type dummy
ip addr add 10.96.0.1/32 dev kube-ipvs0
ip link add sliceproxy-ipvs type dummy
ip addr add 10.96.0.20/32 dev sliceproxy-ipvs
ipvsadm -A -t 10.96.0.1:443 -s rr
ipvsadm -a -t 10.96.0.1:443 -r 192.168.50.2:6443 -m
ipvsadm -A -t 10.96.0.20:80 -s rr
ipvsadm -a -t 10.96.0.20:80 -r 10.244.1.7:8080 -m
ipvsadm -A -t 192.168.60.1:30081 -s rr
ipvsadm -a -t 192.168.60.1:30081 -r 10.244.1.7:8080 -m
cleanup
expect_out "removed: IPVS: 1 virtual services"
expect_out "checked: IPVS: 2 virtual services of sliceproxy's left in place"
expect_out "removed: dummy link kube-ipvs0"
! ipvsadm -S -n | grep -qF 10.96.0.1:443 || fail "kube-proxy's service on kube-ipvs0 is still there"
ipvsadm -S -n | grep -qF -- "-a -t 10.96.0.20:80 -r 10.244.1.7:8080" || fail "sliceproxy's service or its real server was removed"
ipvsadm -S -n | grep -qF 192.168.60.1:30081 || fail "the NodePort sliceproxy adopts was removed"
ip link show sliceproxy-ipvs >/dev/null || fail "sliceproxy-ipvs was removed"
pass "with sliceproxy-ipvs present, only kube-ipvs0's services go"
echo "6 passed, 0 failed"
