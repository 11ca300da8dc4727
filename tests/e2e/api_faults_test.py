#!/usr/bin/env python3
"""API server faults (issue 18), end to end against the test API server, dry-run backend: each
fault hits the requests made after the server restarts with its history compacted (so sliceproxy
must relist and rewatch), the cluster changes meanwhile, and sliceproxy must converge to the
server's state without ever deleting what it programmed before:

- 500s on lists and watches;
- 429 with Retry-After: the next request waits at least that long; a watch answered 503 with
  Retry-After waits that long and resumes the watch (no relist);
- connections cut mid-list (headers and half the body sent);
- a server that accepts connections and never answers: every request times out, no hang.

Cut watches, malformed events, 410 Gone and outages are in api_source_test.py and
api_watch_recovery_test.py.
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from api_watch_recovery_test import Cluster  # noqa: E402

LATE = "default/late:http/TCP/IPv4"


class ApiFaultsTest(unittest.TestCase):
    def start(self):
        c = Cluster()
        self.addCleanup(self.finish, c)
        return c

    def finish(self, c):
        code = c.close()
        if code != 0:
            raise AssertionError("sliceproxy exited with %s:\n%s" % (code, c.plane.stderr()[-5000:]))

    def converge_through(self, c, timeout=30):
        """Restarts the server with a compacted history (relist), changes the cluster, and waits
        for sliceproxy to converge with no deletion on the way."""
        m = c.plane.mark()
        c.srv.refuse(0, compact=True)
        c.add("late", "10.96.0.50", "10.244.5.1")
        c.expected[LATE] = ["10.244.5.1:8080"]
        c.plane.wait_for(c.expected, timeout=timeout)
        self.assertNotIn("deleted", [op for op, _, _ in c.plane.changes_since(m) or []])

    def test_500s_are_retried_and_converge(self):
        c = self.start()
        c.srv.fail_requests(6, 500)
        self.converge_through(c)
        self.assertIn("500", c.plane.stderr())

    def test_connection_cut_mid_list_is_retried_and_converges(self):
        c = self.start()
        c.srv.cut_lists(4)
        self.converge_through(c)

    def test_429_retry_after_is_respected(self):
        c = self.start()
        c.srv.fail_requests(1, 429, retry_after=4, prefix="/api/v1/services")
        start = len(c.srv.requests)
        self.converge_through(c)
        times = [(t, p) for t, p in c.srv.request_times[start:] if p.startswith("/api/v1/services?")]
        self.assertGreaterEqual(len(times), 2, times)
        self.assertGreaterEqual(times[1][0] - times[0][0], 4.0, times)

    def test_watch_503_retry_after_is_respected_and_the_watch_resumes(self):
        c = self.start()
        c.plane.wait_for(c.expected, timeout=30)
        c.srv.fail_requests(1, 503, retry_after=4, prefix="/api/v1/services")
        start = len(c.srv.requests)
        c.srv.drop_watches()
        deadline = time.time() + 30
        while True:
            times = [(t, p) for t, p in c.srv.request_times[start:]
                     if p.startswith("/api/v1/services?")]
            if len(times) >= 2 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(len(times), 2, times)
        self.assertIn("watch=", times[0][1], times)
        self.assertGreaterEqual(times[1][0] - times[0][0], 4.0, times)
        self.assertIn("watch=", times[1][1], "a relist instead of resuming the watch: %s" % times)
        self.converge_through(c)

    # The response header must come within 30 s (beast_transport.cpp kHeaderTimeout): three hung
    # requests cost about 90 s.
    def test_server_that_never_answers_times_out_and_converges(self):
        c = self.start()
        c.srv.hang(3)
        self.converge_through(c, timeout=180)
        self.assertIn("timed out", c.plane.stderr())


if __name__ == "__main__":
    unittest.main()
