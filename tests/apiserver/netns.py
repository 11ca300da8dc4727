"""Running a piece of this process inside a network namespace made with `ip netns add`.

A network namespace is per thread: setns(2) moves only the calling thread, and a socket keeps
the namespace it was created in. So a listening socket made here serves that namespace from any
thread, and the rest of the process never leaves the namespace it started in.
"""

import ctypes
import os
import socket

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns(CLONE_NEWNET): %s" % os.strerror(err))


def run_in(netns, fn):
    """fn() with the calling thread in network namespace `netns` (None: where it is)."""
    if netns is None:
        return fn()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join("/run/netns", netns), os.O_RDONLY)
        try:
            _setns(target)
            try:
                return fn()
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def http_get(netns, host, port, path, timeout=10.0):
    """(status, body) of a plain HTTP/1.0 GET to host:port inside `netns`."""
    sock = run_in(netns, lambda: socket.create_connection((host, port), timeout=timeout))
    with sock:
        sock.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode()
