"""Checks every request passes before any route sees it: the Host it names, and its body size.

**Host.** A page on ``http://evil.example`` whose DNS name is re-pointed at 127.0.0.1 (DNS
rebinding) reaches the server with ``Host: evil.example`` and, for its POSTs,
``Origin: http://evil.example``: the two agree with each other, so comparing them proves
nothing. The server therefore compares both with what it *knows*: the host:port it was started
with (for a loopback address also ``localhost``, ``127.0.0.1`` and ``[::1]`` on that port)
plus the names given with ``--allowed-host`` (a reverse proxy's public name). Any other Host
gets 400 before routing; a POST's ``Origin``, when sent, must name one of the same hosts.

**Body.** A body is refused with 413 from its ``Content-Length`` before a byte of it is read;
a body without one (chunked) is read only up to the limit and refused as soon as it passes it.
So a 200 MB POST costs the server at most the limit (16 KiB) plus one chunk of memory.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY", "AllowedHosts", "BodyLimit", "HostGuard", "is_loopback"]

#: the largest request body any route accepts (bytes)
MAX_BODY = 16_384


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class AllowedHosts:
    """The ``Host`` values (``name`` or ``name:port``, lower case) this server answers to.

    Args:
        host: the address serve listens on.
        port: its port.
        extra: ``--allowed-host`` values: ``name`` (matches the name without a port, as a
            proxy on 443 or 80 sends it, and with serve's own port) or ``name:port``.
    """

    def __init__(self, host: str, port: int, extra: Iterable[str] = ()) -> None:
        names = {_bracket(host.lower())}
        if is_loopback(host):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        allowed = {f"{n}:{port}" for n in names}
        for item in extra:
            value = item.strip().lower()
            if not value:
                continue
            parsed = urlsplit(f"//{value}")
            if parsed.port is not None:
                allowed.add(value)
            else:
                allowed |= {value, f"{value}:{port}"}
        self.values = frozenset(allowed)

    def host_ok(self, host: str | None) -> bool:
        return host is not None and host.strip().lower() in self.values

    def origin_ok(self, origin: str) -> bool:
        """An ``Origin`` header (``scheme://host[:port]``) naming an allowed host."""
        parsed = urlsplit(origin.strip().lower())
        if parsed.scheme not in ("http", "https") or parsed.path or not parsed.netloc:
            return False
        netloc = parsed.netloc
        default = {"http": ":80", "https": ":443"}[parsed.scheme]
        return netloc in self.values or (
            netloc.endswith(default) and netloc[: -len(default)] in self.values
        )


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HostGuard:
    """ASGI middleware: 400 for a ``Host`` header not in :class:`AllowedHosts`."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
            if len(hosts) != 1 or not self.allowed.host_ok(hosts[0]):
                await _refuse(send, 400, "unexpected Host header")
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, without reading past the limit."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"expected a body of at most {self.limit} bytes"
        lengths = [v for k, v in scope["headers"] if k == b"content-length"]
        if lengths:
            try:
                declared = int(lengths[0])
            except ValueError:
                await _refuse(send, 400, "malformed Content-Length")
                return
            if declared > self.limit:
                await _refuse(send, 413, too_big)
                return
        # Read the body here, at most limit + one chunk, then hand it to the app in one piece.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _refuse(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
