"""HTTP requests made from inside a lab namespace by this process, with no child process: a socket is
created by a short-lived thread that joined the namespace (setns(2) moves only the calling thread), and a
socket stays in the namespace it was created in. Spawning a Python per request is what this replaces: in
the emulated test VM each one costs seconds."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

from meshd.rtnl import in_netns


def connect_in_ns(ns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to host:port made inside network namespace `ns` (named by `ip netns`)."""
    return in_netns(ns, lambda: socket.create_connection((host, port), timeout=timeout))


class _NsConnection(http.client.HTTPConnection):
    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ns = ns

    def connect(self) -> None:
        self.sock = connect_in_ns(self._ns, self.host, self.port, self.timeout or 10)


def request_in_ns(
    ns: str,
    method: str,
    url: str,
    body: str = "",
    *,
    content_type: str = "application/json",
    timeout: float = 10,
) -> tuple[int, str]:
    """One plain-HTTP request from inside namespace `ns`: (status, body); status 0 when unreachable."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only http:// URLs with a host: {url}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = _NsConnection(ns, parts.hostname, parts.port or 80, timeout)
    try:
        conn.request(method, path, body=body.encode() or None, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except OSError as exc:
        return 0, str(exc)
    finally:
        conn.close()
