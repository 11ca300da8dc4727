#!/usr/bin/env python3
"""The one helper process that runs inside a network namespace of the sandbox.

It plays two roles, driven by JSON lines on stdin (one reply line on stdout per request):

* pod server: {"op": "listen", "proto": "tcp"|"udp"|"sctp", "port": P} opens IPv4 and IPv6
  listeners; every TCP or SCTP connection and every UDP datagram is answered with one JSON line
  naming this pod and the source address:port it saw (the way a test reads masquerading and NAT);
* traffic client: {"op": "probe", ...} opens N TCP or SCTP connections or sends N UDP requests to
  ADDR:PORT and classifies each as answered (which pod, which source it saw), refused (TCP RST,
  SCTP ABORT or ICMP port unreachable), timeout (dropped) or error (any other errno);
  {"op": "stream_start"/"stream_stop"} run a steady rate of connections in the background.

The process exits as soon as stdin closes, so it never outlives the test that started it.
"""

import errno
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

NAME = sys.argv[1] if len(sys.argv) > 1 else "agent"
# Linux's values; Python's socket module does not name them.
IP_RECVERR, IPV6_RECVERR = 11, 25
SOL_SCTP, SCTP_RTOINFO = 132, 0
_out_lock = threading.Lock()


def reply(obj):
    line = json.dumps(obj, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def new_socket(fam, proto):
    """A socket for `proto`. SCTP is the one-to-one style (SOCK_STREAM), used like TCP; it needs
    the kernel's sctp module (tests/conformance/README.md: where the SCTP cases run)."""
    if proto == "udp":
        return socket.socket(fam, socket.SOCK_DGRAM)
    if proto == "sctp":
        s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        # SCTP ignores ICMP port unreachable unless the socket asks for errors: without this a
        # rejected connection would only time out. Even then connect() notices the error only
        # when the INIT is retransmitted (after 3 s by default), so retransmit after 1 s
        # (struct sctp_rtoinfo: association 0, initial, max, min, in ms). Not sooner: in a
        # loaded qemu guest the INIT ACK often takes longer than 200 ms, and the spurious INIT
        # retransmissions made up to half of the associations of a case fail: reset with the
        # IPVS backend, timed out with nftables (measured in two or three guests at once).
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.setsockopt(SOL_SCTP, SCTP_RTOINFO, struct.pack("=iIII", 0, 1000, 2000, 500))
        return s
    return socket.socket(fam, socket.SOCK_STREAM)


# ---------------------------------------------------------------------------------------------
# pod server


class Server:
    """Every listener of this namespace, served by one selector thread."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.pending = []
        self.listening = set()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        threading.Thread(target=self.loop, daemon=True).start()

    def listen(self, proto, port):
        key = (proto, int(port))
        if key in self.listening:
            return
        socks = []
        for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = new_socket(fam, proto)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, int(port)))
            if proto != "udp":
                s.listen(1024)
            s.setblocking(False)
            socks.append(s)
        with self.lock:
            self.pending.extend((s, proto) for s in socks)
        self.wake_w.send(b"x")
        self.listening.add(key)

    def answer(self, proto, peer, local):
        return (json.dumps({"pod": NAME, "proto": proto, "src": peer[0], "sport": peer[1],
                            "dst": local[0], "dport": local[1]}) + "\n").encode()

    def loop(self):
        while True:
            for key, _ in self.sel.select():
                kind, proto = key.data
                sock = key.fileobj
                if kind == "wake":
                    try:
                        sock.recv(4096)
                    except BlockingIOError:
                        pass
                    with self.lock:
                        pending, self.pending = self.pending, []
                    for s, p in pending:
                        self.sel.register(s, selectors.EVENT_READ, ("listener", p))
                    continue
                if proto != "udp":
                    for _ in range(64):
                        try:
                            conn, peer = sock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        try:
                            conn.setblocking(True)
                            conn.settimeout(1.0)
                            conn.sendall(self.answer(proto, peer, conn.getsockname()))
                            conn.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        finally:
                            conn.close()
                else:
                    for _ in range(64):
                        try:
                            data, peer = sock.recvfrom(2048)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        try:
                            sock.sendto(self.answer("udp", peer, sock.getsockname()), peer)
                        except OSError:
                            pass


# ---------------------------------------------------------------------------------------------
# traffic client


def attempt(proto, addr, port, timeout, src=None, sport=None):
    """One TCP or SCTP connection or one UDP request/answer; returns a result dict."""
    fam = family_of(addr)
    start = time.monotonic()
    s = new_socket(fam, proto)
    result = {}
    try:
        if sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if src or sport:
            s.bind((src or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), int(sport or 0)))
        s.settimeout(timeout)
        s.connect((addr, int(port)))
        result["local"] = s.getsockname()[0]
        result["lport"] = s.getsockname()[1]
        if proto == "udp":
            s.send(b"hello\n")
            data = s.recv(2048)
        else:
            chunks = []
            while True:
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    raise socket.timeout()
                s.settimeout(left)
                chunk = s.recv(2048)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        if not data:
            result.update(r="error", errno="EMPTY")
        else:
            ans = json.loads(data.decode().splitlines()[0])
            result.update(r="answered", pod=ans["pod"], src=ans["src"], sport=ans["sport"],
                          dst=ans["dst"], dport=ans["dport"])
    except socket.timeout:
        result["r"] = "timeout"
    except ConnectionRefusedError:
        result["r"] = "refused"
    except ConnectionResetError:
        result["r"] = "reset"
    except OSError as e:
        result.update(r="error", errno=errno.errorcode.get(e.errno, str(e.errno)), msg=str(e))
    except ValueError as e:
        result.update(r="error", errno="BADANSWER", msg=str(e))
    finally:
        s.close()
    result["ms"] = round((time.monotonic() - start) * 1000, 1)
    return result


def probe(req):
    proto, addr, port = req["proto"], req["addr"], req["port"]
    n, timeout = int(req.get("n", 1)), float(req.get("timeout", 1.5))
    src, sport = req.get("src"), req.get("sport")
    interval = float(req.get("interval", 0))
    if req.get("sequential") or sport:
        out = []
        for i in range(n):
            if i and interval:
                time.sleep(interval)
            out.append(attempt(proto, addr, port, timeout, src, sport))
        return out
    out = [None] * n

    def run(i):
        out[i] = attempt(proto, addr, port, timeout, src, sport)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


class Stream:
    """A steady rate of connections until stopped; every attempt is recorded."""

    def __init__(self, req):
        self.req = req
        self.results = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.workers = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def one(self, t0):
        r = attempt(self.req["proto"], self.req["addr"], self.req["port"],
                    float(self.req.get("timeout", 3.0)), self.req.get("src"))
        r["t"] = round(t0, 3)
        with self.lock:
            self.results.append(r)

    def run(self):
        period = 1.0 / float(self.req.get("rate", 20))
        nxt = time.monotonic()
        while not self.stop_flag.is_set():
            t = threading.Thread(target=self.one, args=(time.time(),), daemon=True)
            t.start()
            self.workers.append(t)
            self.workers = [w for w in self.workers if w.is_alive()]
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                self.stop_flag.wait(delay)
            else:
                nxt = time.monotonic()

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        for w in self.workers:
            w.join()
        with self.lock:
            return sorted(self.results, key=lambda r: r["t"])


def main():
    server = None
    streams = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "listen":
                if server is None:
                    server = Server()
                server.listen(req["proto"], req["port"])
                reply({"ok": True})
            elif op == "probe":
                reply({"ok": True, "results": probe(req)})
            elif op == "stream_start":
                streams[req["id"]] = Stream(req)
                reply({"ok": True})
            elif op == "stream_stop":
                reply({"ok": True, "results": streams.pop(req["id"]).stop()})
            elif op == "ping":
                reply({"ok": True, "name": NAME, "pid": os.getpid()})
            else:
                reply({"ok": False, "error": "unknown op " + op})
        except Exception as e:  # report, never die: the orchestrator decides
            reply({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    os._exit(0)


if __name__ == "__main__":
    main()
