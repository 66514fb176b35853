"""medcrypt submit retries a head whose job agent is not up yet, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from medcrypt.cluster import _submit
from medcrypt.errors import JobError


class _Head:
    """A Jobs API client that refuses ``refusals`` submits with ``message`` first."""

    def __init__(self, refusals: int, message: str) -> None:
        self.refusals, self.message, self.calls = refusals, message, 0

    def submit_job(self, **_: Any) -> str:
        self.calls += 1
        if self.calls <= self.refusals:
            raise RuntimeError(self.message)
        return "job-1"

    def get_job_status(self, _: str) -> Any:
        return type("S", (), {"value": "FAILED"})()

    def get_job_logs(self, _: str) -> str:
        return f"done\n{_submit.EXIT_MARK} 3\n"


def test_an_agent_not_ready_yet_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    head = _Head(2, "Request failed with status code 500: No available agent to submit job")
    monkeypatch.setattr(_submit, "_client", lambda address: head)
    out = _submit.submit_and_wait("http://127.0.0.1:1", ["encrypt"], poll_s=0.01)
    assert head.calls == 3 and out.exit_code == 3 and out.job_id == "job-1"


def test_other_refusals_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    head = _Head(5, "Missing authentication token")
    monkeypatch.setattr(_submit, "_client", lambda address: head)
    with pytest.raises(JobError, match="RAY_AUTH_MODE=token"):
        _submit.submit_and_wait("http://127.0.0.1:1", ["encrypt"], poll_s=0.01)
    assert head.calls == 1
