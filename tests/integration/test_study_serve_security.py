"""``study serve``: nobody sees what is not theirs, over real HTTP to uvicorn on 127.0.0.1.

Raw request lines go through ``http.client`` (no URL normalisation on the way), so the
traversal variants reach the server exactly as written. Every refused request is counted by
status code and printed for the closing note; no reply may contain the study secret, a token,
a case name or ground truth.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _study_fixtures import make_phantom_study
from _study_server import StudyServer, study_links

from medcrypt.study import load_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

READERS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StudyServer, Path]]:
    study = make_phantom_study(tmp_path_factory.mktemp("security"), READERS)
    server = StudyServer(study).start()
    try:
        yield server, study
    finally:
        server.stop()


def _request(
    server: StudyServer,
    method: str,
    path: str,
    token: str | None = None,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in sent.items():
            conn.putheader(k, v)
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def _secrets(study: Path) -> list[bytes]:
    key = load_key(study / "unblinding" / "key.json")
    links = study_links(study)
    out = [key.secret_hex.encode(), *(t.encode() for t in links.values())]
    out += [c.encode() for c in key.cases()]  # case IDs link an image to a patient
    return out


API = [
    ("GET", "/api/reader", None),
    ("GET", "/api/reader/image/aaaa-bbbb-cccc", None),
    ("POST", "/api/reader/answer", {"answer_id": "x" * 20, "image_id": "a", "diagnosis": "b"}),
    ("POST", "/api/reader/finish", {"session": 1}),
    ("GET", "/api/coordinator", None),
    ("POST", "/api/coordinator/open-early", {"reader": "alice"}),
    ("POST", "/api/coordinator/ingest", {}),
    ("POST", "/api/coordinator/tally", {}),
]

TRAVERSAL = [
    "/../unblinding/key.json",
    "/..%2funblinding%2fkey.json",
    "/%2e%2e/unblinding/key.json",
    "/%2e%2e%2funblinding%2fkey.json",
    "/static/../unblinding/key.json",
    "/static/..%2f..%2fstudy.json",
    "/static/%2e%2e%2f%2e%2e%2fstudy.json",
    "/static/....//....//study.json",
    "/static/..\\..\\study.json",
    "/static/%252e%252e%252fstudy.json",
    "/static/reader.js/../../unblinding/key.json",
    "/static//etc/passwd",
    "/static/%00reader.js",
    "/static/reader.js%00.png",
    "/api/reader/image/..%2f..%2f..%2funblinding%2fkey",
    "/api/reader/image/../../../unblinding/key.json",
    "/api/reader/image/%2e%2e%2f%2e%2e%2fstudy",
    "/api/reader/image/....//....//study",
    "/api/reader/image/..\\..\\..\\unblinding\\key",
    "/api/reader/image/%252e%252e%252fstudy",
    "/api/reader/image/%c0%ae%c0%ae%2fstudy",
    "/api/reader/image//etc/passwd",
    "/api/reader/image/%2fetc%2fpasswd",
    "/api/reader/image/..%5c..%5cstudy",
    "/api/reader/image/aaaa-bbbb-cccc%00.png",
    "/packets/alice/session-1/images/../../../../unblinding/key.json",
    "/study.json",
    "/answers.sqlite",
    "/unblinding/links.txt",
    "/packets/alice/session-1/answers_alice_session-1.csv",
]


def test_security_figures(served: tuple[StudyServer, Path]) -> None:
    server, study = served
    links = study_links(study)
    secrets = _secrets(study)
    codes: dict[str, Counter[int]] = {}

    def check(kind: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        codes.setdefault(kind, Counter())[status] += 1
        assert status >= 400, (kind, status, body[:200])
        assert "content-security-policy" in headers or status == 400, kind
        for s in secrets:
            assert s not in body, (kind, "leaked a secret")

    for method, path, body in API:
        check("no token", *_request(server, method, path, None, body))
        check("wrong token", *_request(server, method, path, "x" * 43, body))
        check("malformed header", *_request(server, method, path, "", body))
    for method, path, body in API:
        other = links["bob"] if path.startswith("/api/coordinator") else links["coordinator"]
        check("token of the other role", *_request(server, method, path, other, body))

    # another reader: carol's token opens carol's session only, never alice's images or answers
    key = load_key(study / "unblinding" / "key.json")
    first = key.assignment("alice", 1).image_ids[0]
    mine = {"answer_id": "a" * 20, "image_id": first, "diagnosis": key.config.classes[1]}
    assert _request(server, "POST", "/api/reader/answer", links["alice"], mine)[0] == 200
    alice2 = set(key.assignment("alice", 2).image_ids) - set(key.assignment("carol", 1).image_ids)
    assert alice2  # same half as alice: carol's session 1 shares no image with alice's 2
    for iid in sorted(alice2):
        check(
            "another reader's image",
            *_request(server, "GET", f"/api/reader/image/{iid}", links["carol"]),
        )
        body = {"answer_id": "y" * 20, "image_id": iid, "diagnosis": key.config.classes[0]}
        check(
            "another reader's image",
            *_request(server, "POST", "/api/reader/answer", links["carol"], body),
        )
    status, raw, _ = _request(server, "GET", "/api/reader", links["carol"])
    assert status == 200 and json.loads(raw)["reader"] == "carol"
    assert json.loads(raw)["answers"] == {}  # alice's answer is not carol's to see

    for path in TRAVERSAL:
        for token in (links["alice"], links["coordinator"], None):
            check("path traversal", *_request(server, "GET", path, token))

    # cross-site requests: a foreign Origin, a form post, a cross-site fetch
    answer = {"answer_id": "z" * 20, "image_id": key.assignment("alice", 1).image_ids[0]}
    answer["diagnosis"] = key.config.classes[0]
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain"},
    ):
        check(
            "cross-site POST",
            *_request(server, "POST", "/api/reader/answer", links["alice"], answer, headers),
        )

    summary = {kind: dict(sorted(c.items())) for kind, c in codes.items()}
    print("security figures (requests per status code):", json.dumps(summary))
    assert sum(codes["path traversal"].values()) == 3 * len(TRAVERSAL) == 90
    assert len(TRAVERSAL) == 30
    assert set(codes["no token"]) == {401}
    assert set(codes["wrong token"]) == {401}
    assert set(codes["token of the other role"]) == {403}
    assert set(codes["cross-site POST"]) <= {403, 415}
    assert set(codes["another reader's image"]) <= {404, 422}
    # nothing was stored by any refused request: only alice's own answer
    status, raw, _ = _request(server, "GET", "/api/coordinator", links["coordinator"])
    answered = {(s["reader"], s["session"]): s["answered"] for s in json.loads(raw)["sessions"]}
    assert answered == {slot: int(slot == ("alice", 1)) for slot in answered}


def test_pages_carry_the_security_headers_and_no_study_data(
    served: tuple[StudyServer, Path],
) -> None:
    server, study = served
    for path in ("/", "/coordinator", "/static/reader.js", "/static/app.css"):
        status, body, headers = _request(server, "GET", path)
        assert status == 200, path
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert b"http://" not in body and b"https://" not in body, path  # nothing from outside
        assert b"serve-study" not in body  # the shell names no study
        for s in _secrets(study):
            assert s not in body
