"""The in-sandbox forwarder: loopback TCP inside the sandbox → the proxy's unix socket.

A confined kernel has a network namespace of its own with only loopback. Its ``HTTP_PROXY`` and
``HTTPS_PROXY`` point at ``127.0.0.1:3128``, where this small program (run with the sandbox's
own Python, stdlib only) accepts connections and relays each one to the unix socket bound at
``/run/kernel/proxy.sock``. That socket exists only while the container's network policy is an
allowlist; otherwise every connection is closed at once. The filtering happens in the server,
outside the sandbox: code that kills or replaces the forwarder gains nothing.
"""

from __future__ import annotations

__all__ = ["FORWARDER_SOURCE"]

FORWARDER_SOURCE = r"""
import socket, sys, threading
SOCK, PORT = sys.argv[1], int(sys.argv[2])
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(c):
    u = socket.socket(socket.AF_UNIX)
    try:
        u.connect(SOCK)
    except OSError:
        c.close()
        u.close()
        return
    t = threading.Thread(target=pipe, args=(c, u), daemon=True)
    t.start()
    pipe(u, c)
    t.join()
    c.close()
    u.close()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", PORT))
srv.listen(64)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
