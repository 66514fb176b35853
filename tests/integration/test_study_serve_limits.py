"""``study serve`` over raw sockets: a foreign Host is refused (DNS rebinding), and a huge
body is refused before it is read, so the server's memory stays flat.

The body test streams 200 MB at the server (once with its Content-Length, once chunked with
none) and reads the server process's peak resident memory (``VmHWM`` in
``/proc/PID/status``) before and after; the figures are printed for the closing note.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _study_fixtures import make_phantom_study
from _study_server import StudyServer, study_links

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BIG = 200 * 1024 * 1024
CHUNK = 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StudyServer, Path]]:
    study = make_phantom_study(tmp_path_factory.mktemp("limits"), ("alice", "bob"))
    server = StudyServer(study).start()
    try:
        yield server, study
    finally:
        server.stop()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reply(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    sock.settimeout(30)
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return status, body


def _raw(server: StudyServer, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        return _reply(sock)


def _stream(server: StudyServer, token: str, chunked: bool) -> tuple[int, bytes, int]:
    """POST 200 MB of JSON-ish bytes; stop sending once the server has answered.

    Returns the status, the reply body and how many bytes were sent.
    """
    head = (
        f"POST /api/reader/answer HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    )
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {BIG}\r\n\r\n"
    block = b" " * CHUNK
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode())
        while sent < BIG:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:  # the server has answered (or closed): stop sending
                break
            piece = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(block)
        if sent >= BIG and chunked:
            sock.sendall(b"0\r\n\r\n")
        status, body = _reply(sock)
    return status, body, sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mb_body_is_refused_before_it_is_read_and_memory_stays_flat(
    served: tuple[StudyServer, Path], chunked: bool
) -> None:
    server, study = served
    assert server.proc is not None
    pid = server.proc.pid
    token = study_links(study)["alice"]
    before = _status_kib(pid, "VmHWM")
    rss_before = _status_kib(pid, "VmRSS")
    status, body, sent = _stream(server, token, chunked)
    time.sleep(0.2)
    after = _status_kib(pid, "VmHWM")
    rss_after = _status_kib(pid, "VmRSS")
    print(
        f"200 MB POST ({'chunked' if chunked else 'Content-Length'}): status {status}, "
        f"{sent / 2**20:.0f} MiB sent before the reply, server peak RSS {before / 1024:.1f} -> "
        f"{after / 1024:.1f} MiB, RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB"
    )
    assert status == 413, body
    assert after - before < 20 * 1024, (before, after)  # not 200 MB: under 20 MiB of growth
    assert sent <= 4 * CHUNK  # refused on the headers (or the first chunks), not at the end
    assert "at most 16384 bytes" in json.loads(body)["error"]
    # the server still answers
    code, _ = _raw(server, f"GET /static/app.css HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n")
    assert code == 200


def test_a_foreign_host_is_refused_and_a_rebound_post_is_not_stored(
    served: tuple[StudyServer, Path],
) -> None:
    server, study = served
    token = study_links(study)["bob"]
    from medcrypt.study import load_key

    key = load_key(study / "unblinding" / "key.json")
    iid = key.assignment("bob", 1).image_ids[0]
    payload = json.dumps(
        {"answer_id": "r" * 20, "image_id": iid, "diagnosis": key.config.classes[0]}
    ).encode()
    port = server.port
    codes = {}
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", "", "10.0.0.1"):
        line = f"Host: {host}\r\n"
        codes[f"GET / Host={host!r}"] = _raw(server, f"GET / HTTP/1.1\r\n{line}\r\n")[0]
        codes[f"POST Host={host!r}"] = _raw(
            server,
            f"POST /api/reader/answer HTTP/1.1\r\n{line}Origin: http://{host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n",
            payload,
        )[0]
    print("foreign Host:", json.dumps(codes))
    assert set(codes.values()) == {400}, codes
    ok = {
        f"127.0.0.1:{port}": 200,
        f"localhost:{port}": 200,
    }
    for host, want in ok.items():
        assert _raw(server, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")[0] == want
    # a same-host POST with a foreign Origin is refused too; nothing was stored
    code, _ = _raw(
        server,
        f"POST /api/reader/answer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: http://evil.example\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n",
        payload,
    )
    assert code == 403
    import sqlite3

    with sqlite3.connect(study / "answers.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM answers WHERE reader = 'bob'").fetchone() == (0,)
