#!/usr/bin/env python3
"""The data-plane conformance suite: every case of cases.CASES against one backend
(SLICEPROXY_BACKEND, default nftables; binary SLICEPROXY_BIN, default build/sliceproxy).

A case whose features the backend declares unsupported (`sliceproxy capabilities`) passes only if
this file's table expects that declaration; nothing is skipped silently. A case whose probes need
what this machine's kernel lacks (SCTP sockets: KERNEL_NEEDS) is reported as skipped with the
name of the CTest test that runs it in a kernel that has it (Debian's, under qemu). Needs root: it
builds network namespaces and fails (never skips) if it cannot.

    sudo python3 tests/conformance/test_conformance.py            # every case
    sudo python3 tests/conformance/test_conformance.py -k etp     # cases whose name matches
    SLICEPROXY_CONFORMANCE_KERNEL_CASES=sctp ...                  # only the SCTP cases; the
                                                                  # kernel must offer SCTP
"""

import json
import os
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases  # noqa: E402
import kernel_state  # noqa: E402
import proxy  # noqa: E402
from framework import FEATURES, TABLE_ONLY, Runner  # noqa: E402
from sandbox import Sandbox  # noqa: E402

# Per backend: (features it must declare unsupported, features it may declare either way), from
# expectations.json. A registered backend missing from it fails the suite: add it when it lands.
EXPECTED_UNSUPPORTED = {
    name: (frozenset(e["unsupported"]), frozenset(e["either"]))
    for name, e in kernel_state.expectations().items()
}


# What a case's probes need from the kernel beyond TCP and UDP (framework.Case.kernel_needs), and
# the CTest test that runs those cases where the kernel has it (tests/conformance/vm_guest.sh
# under tests/qemu/vm.sh).
KERNEL_NEEDS = {"sctp": ("SCTP sockets (the sctp module)", "conformance_sctp_vm")}
# Set in that test's guest: only the cases that need this, and a kernel without it fails them.
KERNEL_CASES = os.environ.get("SLICEPROXY_CONFORMANCE_KERNEL_CASES", "")


def kernel_lacks(need):
    """Why this kernel cannot offer `need`, or None."""
    if need == "sctp":
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        except OSError as e:
            return "socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): %s" % e.strerror
    return None


class Conformance(unittest.TestCase):
    sb = None

    @classmethod
    def setUpClass(cls):
        cls.backend = proxy.backend()
        cls.sb = Sandbox()
        cls.sb.__enter__()
        cls.caps = proxy.capabilities(cls.sb, cls.backend)
        cls.runner = Runner(cls.sb, cls.backend)

    @classmethod
    def tearDownClass(cls):
        if cls.sb:
            cls.sb.teardown()

    def test_000_capabilities_declared_as_expected(self):
        self.assertIn(self.backend, EXPECTED_UNSUPPORTED,
                      "backend %r has no entry in EXPECTED_UNSUPPORTED (test_conformance.py)"
                      % self.backend)
        must, may = EXPECTED_UNSUPPORTED[self.backend]
        supported, unsupported = set(self.caps["supported"]), set(self.caps["unsupported"])
        self.assertEqual(self.caps["backend"], self.backend)
        self.assertEqual(supported | unsupported, set(FEATURES),
                         "capabilities must name every feature exactly once: %s" % self.caps)
        self.assertFalse(supported & unsupported, self.caps)
        self.assertLessEqual(must & set(FEATURES), unsupported,
                             "the table expects these declared unsupported: %s" % must)
        self.assertLessEqual(unsupported, must | may,
                             "declared unsupported but expected to work: %s"
                             % sorted(unsupported - must - may))

    def test_001_registry_and_expectations_agree(self):
        # Every backend of the build that programs a kernel has an expectations entry (and so a
        # CTest registration), and every entry names a backend of the build.
        p = self.sb.node_exec([proxy.binary(), "backends"], check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        registered = {b["name"] for b in json.loads(p.stdout) if b["programsKernel"]}
        self.assertEqual(registered, set(EXPECTED_UNSUPPORTED),
                         "`sliceproxy backends` and tests/conformance/expectations.json differ")

    def test_002_kernel_cases_selected(self):
        if not KERNEL_CASES:
            return
        self.assertIn(KERNEL_CASES, KERNEL_NEEDS, "SLICEPROXY_CONFORMANCE_KERNEL_CASES")
        self.assertTrue(SELECTED, "no case needs %s" % KERNEL_CASES)
        why = kernel_lacks(KERNEL_CASES)
        self.assertIsNone(why, "this kernel must offer %s: %s"
                          % (KERNEL_NEEDS[KERNEL_CASES][0], why))


def make_test(case):
    def test(self):
        needed = case.features()
        # The backend declares the service features it lacks; where traffic may start and
        # --masquerade-all are declared in the table (expectations.json) alone.
        must, _ = EXPECTED_UNSUPPORTED.get(self.backend, (frozenset(), frozenset()))
        unsupported = needed & (set(self.caps["unsupported"]) | (must & TABLE_ONLY))
        if unsupported:
            must, may = EXPECTED_UNSUPPORTED.get(self.backend, (frozenset(), frozenset()))
            self.assertLessEqual(unsupported, must | may,
                                 "%s declares %s unsupported; case %s needs it"
                                 % (self.backend, sorted(unsupported), case.name))
            sys.stderr.write("  [declared unsupported: %s] " % ", ".join(sorted(unsupported)))
            return
        lacking = {n: why for n in sorted(case.kernel_needs()) if (why := kernel_lacks(n))}
        if lacking:
            self.assertFalse(KERNEL_CASES, "this kernel lacks what the case needs: %s" % lacking)
            self.skipTest("; ".join(
                "needs %s, which this kernel lacks (%s): runs in CTest %s, Debian's kernel under "
                "qemu (ctest --test-dir build -R %s)"
                % (KERNEL_NEEDS[n][0], why, KERNEL_NEEDS[n][1], KERNEL_NEEDS[n][1])
                for n, why in lacking.items()))
        t0 = time.monotonic()
        logs = []
        self.runner.run(case, log=logs.append)
        if os.environ.get("SLICEPROXY_CONFORMANCE_VERBOSE"):
            sys.stderr.write("\n" + "\n".join(logs) + "\n")
        sys.stderr.write("[%.1fs] " % (time.monotonic() - t0))

    test.__doc__ = "%s: %s" % (case.name, case.doc)
    return test


SELECTED = [c for c in cases.CASES if not KERNEL_CASES or KERNEL_CASES in c.kernel_needs()]
for _i, _case in enumerate(cases.CASES):
    if _case in SELECTED:
        setattr(Conformance, "test_%03d_%s" % (_i + 1, _case.name), make_test(_case))


if __name__ == "__main__":
    unittest.main(verbosity=2)
