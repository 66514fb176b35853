"""Real components for integration tests: a moto S3 server over HTTP and a flaky proxy.

Fixtures (shared with the cluster tests):

- ``aws_env`` (session): fake credentials and region in ``os.environ`` (before any client is
  built, and inherited by Ray workers started afterwards); real ``~/.aws`` files and the
  instance-metadata lookup are switched off.
- ``moto_server`` (session): ``ThreadedMotoServer`` on 127.0.0.1 at a free port; its value is
  the endpoint URL (``http://127.0.0.1:PORT``).
- ``s3_client``: a plain boto3 client on that endpoint, for arranging and inspecting state.
- ``s3_bucket``: a fresh, empty bucket name per test.
- ``flaky_proxy`` (session proxy, reset per test): a :class:`FlakyProxy` in front of the moto
  server; install a :class:`FaultPlan` with ``flaky_proxy.set_plan(...)`` and point stores at
  ``flaky_proxy.endpoint_url``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _flaky_proxy import FaultPlan, FlakyProxy

__all__ = ["FaultPlan", "FlakyProxy"]

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Fake AWS credentials in the environment for the whole session (restored afterwards)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _FAKE_ENV.items():
            mp.setenv(name, value)
        for name in _UNSET:
            mp.delenv(name, raising=False)
        yield dict(_FAKE_ENV)


@pytest.fixture(scope="session")
def moto_server(aws_env: dict[str, str]) -> Iterator[str]:
    """A real S3 endpoint over HTTP (moto's server mode) on 127.0.0.1; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _s3_admin(moto_server: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=moto_server,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture
def s3_client(_s3_admin: Any) -> Any:
    """A boto3 S3 client on the moto endpoint (for setting up and checking state directly)."""
    return _s3_admin


@pytest.fixture
def s3_bucket(_s3_admin: Any) -> str:
    """A new empty bucket for this test; its name."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    _s3_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def _flaky_proxy_server(moto_server: str) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(moto_server).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def flaky_proxy(_flaky_proxy_server: FlakyProxy) -> Iterator[FlakyProxy]:
    """The fault-injecting proxy in front of the moto server, forwarding everything until a
    test installs a plan; plans and counters are cleared after each test."""
    _flaky_proxy_server.clear()
    yield _flaky_proxy_server
    _flaky_proxy_server.clear()
