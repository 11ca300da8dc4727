#!/usr/bin/env python3
"""The data-plane conformance suite: every case of cases.CASES against one backend
(SLICEPROXY_BACKEND, default nftables; binary SLICEPROXY_BIN, default build/sliceproxy).

A case whose features the backend declares unsupported (`sliceproxy capabilities`) passes only if
this file's table expects that declaration; nothing is skipped silently. Needs root: it builds
network namespaces and fails (never skips) if it cannot.

    sudo python3 tests/conformance/test_conformance.py            # every case
    sudo python3 tests/conformance/test_conformance.py -k etp     # cases whose name matches
"""

import json
import os
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
        t0 = time.monotonic()
        logs = []
        self.runner.run(case, log=logs.append)
        if os.environ.get("SLICEPROXY_CONFORMANCE_VERBOSE"):
            sys.stderr.write("\n" + "\n".join(logs) + "\n")
        sys.stderr.write("[%.1fs] " % (time.monotonic() - t0))

    test.__doc__ = "%s: %s" % (case.name, case.doc)
    return test


for _i, _case in enumerate(cases.CASES):
    setattr(Conformance, "test_%03d_%s" % (_i + 1, _case.name), make_test(_case))


if __name__ == "__main__":
    unittest.main(verbosity=2)
