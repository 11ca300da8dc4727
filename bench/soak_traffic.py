#!/usr/bin/env python3
"""The client of the soak (bench/soak.py): paced TCP new connections and UDP request/response to
unchanged services, every failure classified. Runs inside the client network namespace (the
driver starts it with `ip netns exec`), in its own process so the driver's API server and churn
never delay a request and turn into a false failure.

  soak_traffic.py --tcp IP:PORT --udp IP:PORT --rate R --seconds S [--timeout T]

Each protocol has one thread that starts a request every 1/R s (absolute schedule; a slot missed
because the previous request was still waiting is counted as `late`, not sent twice). A request
is one new TCP connection (connect, send a unique payload, read the echo, close) or one new UDP
socket (a new source port: a new conntrack flow through the service rules), each bounded by
--timeout. Prints one JSON object at the end: counts, failures by class, and the first failures
with their time. Stops after --seconds or on SIGTERM.
"""

import argparse
import errno
import json
import signal
import socket
import threading
import time

MAX_LISTED = 200
# An answer this late needed a retransmission (the first TCP SYN retry is after 1 s): counted
# apart, not as a failure.
SLOW_S = 0.9


def classify(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return type(exc).__name__


class Stream:
    def __init__(self, proto, target, rate, timeout):
        host, port = target.rsplit(":", 1)
        self.proto, self.addr, self.rate, self.timeout = proto, (host, int(port)), rate, timeout
        self.sent = self.ok = self.late = self.slow = 0
        self.max_ok_s = 0.0
        self.failures = {}
        self.listed = []

    def fail(self, cls, t0):
        self.failures[cls] = self.failures.get(cls, 0) + 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append({"t": round(t0, 3), "class": cls})

    def one(self, n):
        payload = ("%s-%d\n" % (self.proto, n)).encode()
        if self.proto == "tcp":
            with socket.create_connection(self.addr, timeout=self.timeout) as s:
                s.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = s.recv(len(payload) - len(got))
                    if not chunk:
                        return "closed-early"
                    got += chunk
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(self.timeout)
                s.sendto(payload, self.addr)
                got, _ = s.recvfrom(2048)
        return None if got == payload else "wrong-answer"

    def run(self, stop, end):
        period, nxt = 1.0 / self.rate, time.monotonic()
        while not stop.is_set() and time.monotonic() < end:
            t0 = time.time()
            self.sent += 1
            try:
                err = self.one(self.sent)
            except Exception as e:  # noqa: BLE001 - every failure is counted by class
                err = classify(e)
            if err:
                self.fail(err, t0)
            else:
                self.ok += 1
                took = time.time() - t0
                self.max_ok_s = max(self.max_ok_s, took)
                if took >= SLOW_S:
                    self.slow += 1
                    if len(self.listed) < MAX_LISTED:
                        self.listed.append({"t": round(t0, 3), "class": "slow-ok",
                                            "took_s": round(took, 3)})
            nxt += period
            now = time.monotonic()
            if now > nxt:  # skip missed slots: the rate stays bounded
                missed = int((now - nxt) / period) + 1
                self.late += missed
                nxt += missed * period
            stop.wait(max(0.0, nxt - time.monotonic()))

    def report(self):
        return {"target": "%s:%d" % self.addr, "sent": self.sent, "ok": self.ok,
                "failed": sum(self.failures.values()), "late_slots": self.late,
                "slow_ok": self.slow, "max_ok_ms": round(1000 * self.max_ok_s, 1),
                "failures_by_class": self.failures, "first_failures": self.listed}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tcp", required=True)
    p.add_argument("--udp", required=True)
    p.add_argument("--rate", type=float, default=20, help="requests per second per protocol")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args()
    if not 0 < args.rate <= 500 or not 0 < args.seconds <= 7200:
        raise SystemExit("soak_traffic: --rate must be in (0, 500], --seconds in (0, 7200]")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    end = time.monotonic() + args.seconds
    streams = [Stream("tcp", args.tcp, args.rate, args.timeout),
               Stream("udp", args.udp, args.rate, args.timeout)]
    threads = [threading.Thread(target=s.run, args=(stop, end)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({s.proto: s.report() for s in streams}), flush=True)


if __name__ == "__main__":
    main()
