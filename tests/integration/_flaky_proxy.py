"""A small threaded HTTP reverse proxy that injects transient S3 failures.

It sits on 127.0.0.1 in front of a real S3 endpoint (the moto server) and, per a
:class:`FaultPlan`, answers some requests itself with ``503 SlowDown``,
``503 ServiceUnavailable`` or ``500 InternalError`` S3 error bodies (or ``403 AccessDenied``,
to show what is *not* retried), or resets the TCP connection: before forwarding
(``reset``), or after forwarding, so that the request takes effect but its answer is lost
(``lost_response``). Everything else is forwarded unchanged. It counts what it injected so
a test can prove faults really happened.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

FaultKind = Literal["slowdown", "internal", "unavailable", "reset", "denied", "lost_response"]

_ERRORS: dict[str, tuple[int, str, str]] = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "unavailable": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
    "denied": (403, "AccessDenied", "Access Denied"),  # not transient: must not be retried
}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
}


@dataclass
class FaultPlan:
    """Which requests fail, and how.

    A request is *eligible* when its method is in ``methods`` (all if ``None``) and its path
    contains ``path_contains`` (all if ``None``). Among eligible requests, number ``n``
    (1-based) fails if ``n <= fail_first``, or ``every`` divides ``n``, or a draw from a
    ``random.Random(seed)`` falls below ``rate``; at most ``max_faults`` fail in total. Failed
    requests take their kind from ``kinds`` in turn.
    """

    fail_first: int = 0
    every: int = 0
    rate: float = 0.0
    seed: int = 0
    kinds: Sequence[FaultKind] = ("slowdown",)
    methods: Sequence[str] | None = None
    path_contains: str | None = None
    max_faults: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.kinds:
            raise ValueError("FaultPlan.kinds must name at least one fault kind")
        for kind in self.kinds:
            if kind not in (*_ERRORS, "reset", "lost_response"):
                raise ValueError(f"unknown fault kind {kind!r}")
        self._rng = random.Random(self.seed)


class FlakyProxy:
    """Reverse proxy on ``127.0.0.1:<free port>`` forwarding to ``upstream`` (an http URL).

    Attributes:
        endpoint_url: what to give boto3 as ``endpoint_url``.
        injected: Counter of injected faults by kind.
        forwarded: number of requests passed through to the upstream.
        eligible: number of requests that matched the plan's filters.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"expected upstream like http://127.0.0.1:PORT, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.plan = FaultPlan()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self.eligible = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def start(self) -> FlakyProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def set_plan(self, plan: FaultPlan) -> None:
        """Install ``plan`` and zero the counters."""
        with self._lock:
            self.plan = plan
            self.injected = Counter()
            self.forwarded = 0
            self.eligible = 0

    def clear(self) -> None:
        """Forward everything from now on (counters are zeroed)."""
        self.set_plan(FaultPlan())

    def _decide(self, method: str, path: str) -> str | None:
        with self._lock:
            plan = self.plan
            if plan.methods is not None and method not in plan.methods:
                return None
            if plan.path_contains is not None and plan.path_contains not in path:
                return None
            self.eligible += 1
            n = self.eligible
            if plan.max_faults is not None and self.total_injected >= plan.max_faults:
                return None
            fail = n <= plan.fail_first or (plan.every > 0 and n % plan.every == 0)
            if not fail and plan.rate > 0:
                fail = plan._rng.random() < plan.rate
            if not fail:
                return None
            kind = plan.kinds[self.total_injected % len(plan.kinds)]
            self.injected[kind] += 1
            return kind

    def _count_forward(self) -> None:
        with self._lock:
            self.forwarded += 1


def _make_handler(proxy: FlakyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size_line = self.rfile.readline()
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length", "0") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            body = self._read_body()
            kind = proxy._decide(self.command, self.path)
            if kind == "lost_response":
                # the request reaches S3 and takes effect, but its answer never arrives
                self._forward(body, reply=False)
                self._reset()
                return
            if kind == "reset":
                self._reset()
                return
            if kind is not None:
                status, code, message = _ERRORS[kind]
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{message}</Message>"
                    "<RequestId>FLAKYPROXY</RequestId><HostId>flaky-proxy</HostId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-amz-request-id", "FLAKYPROXY")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            self._forward(body)

        def _reset(self) -> None:
            # RST instead of FIN: linger 0, then close mid-conversation.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _forward(self, body: bytes, *, reply: bool = True) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                out_headers = [
                    (k, v)
                    for k, v in resp.getheaders()
                    if k.lower() not in _HOP_BY_HOP and k.lower() not in ("server", "date")
                ]
            finally:
                conn.close()
            proxy._count_forward()
            if not reply:
                return
            self.send_response(resp.status, resp.reason)
            has_length = False
            for k, v in out_headers:
                if k.lower() == "content-length":
                    has_length = True
                    if self.command != "HEAD":
                        v = str(len(data))
                self.send_header(k, v)
            if not has_length:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD" and data:
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
