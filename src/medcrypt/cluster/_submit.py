"""Submit a medcrypt command as a Ray job, wait for it, and give back ITS exit code.

``ray job submit`` turns every non-zero exit of the entrypoint into a failed job and exits 1,
so cron can no longer tell "some cases quarantined" (3) from "bad config" (2) or "stopped
early" (4). :func:`submit_and_wait` runs the command on the cluster through the Jobs API
(``ray.job_submission.JobSubmissionClient``, which needs ``ray[default]``), in a shell line
that prints ``medcrypt-exit-code: <n>`` after it, waits for the job to end, and reads that line
back from the job's log. A job that ends without the line (killed, lost node, stopped) counts
as :data:`~medcrypt.cluster._summary.EXIT_JOB_FAILED` (4): a rerun resumes.

Token authentication (Ray >= 2.52; ``ray.init()`` clusters have it on by default from 2.59):
the client sends the token only when ``RAY_AUTH_MODE=token`` is set in its environment, with
the cluster's token in ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``. A refused request is reported with that hint.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tenacity

from medcrypt.cluster._summary import EXIT_JOB_FAILED, EXIT_OK
from medcrypt.errors import JobError

__all__ = ["EXIT_MARK", "SubmitResult", "entrypoint", "exit_code_from_logs", "submit_and_wait"]

logger = logging.getLogger(__name__)

#: the line the job's shell prints after the medcrypt command, with its exit status
EXIT_MARK = "medcrypt-exit-code:"
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_AUTH_HINT = (
    "the cluster wants a token: set RAY_AUTH_MODE=token and give the cluster's token in "
    "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` on the head)"
)


@dataclass(frozen=True)
class SubmitResult:
    """How the submitted job ended: Ray's job id and status, the command's exit code, logs."""

    job_id: str
    status: str
    exit_code: int
    logs: str


def entrypoint(args: Sequence[str]) -> str:
    """The shell line the job runs: ``medcrypt <args>``, then its exit status as a log line."""
    command = shlex.join(["medcrypt", *args])
    return f'{command}; code=$?; echo "{EXIT_MARK} $code"; exit $code'


def exit_code_from_logs(status: str, logs: str) -> int:
    """The command's exit code from the job's log (its last marker line); without one, 0 for
    a job Ray calls SUCCEEDED and 4 (stopped early) for any other end."""
    codes = re.findall(rf"^{re.escape(EXIT_MARK)} (\d+)\s*$", logs, flags=re.MULTILINE)
    if codes:
        return int(codes[-1])
    return EXIT_OK if status == "SUCCEEDED" else EXIT_JOB_FAILED


def _client(address: str) -> Any:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise JobError(
            "submitting needs Ray's job client: pip install 'medcrypt[cluster]' (ray[default,data])"
        ) from exc
    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        text = str(exc)
        hint = f"; {_AUTH_HINT}" if "auth" in text.lower() or "token" in text.lower() else ""
        raise JobError(f"cannot reach the Ray cluster at {address}: {text}{hint}") from exc


def _agent_not_ready(exc: BaseException) -> bool:
    return "no available agent" in str(exc).lower()


def submit_and_wait(
    address: str,
    args: Sequence[str],
    *,
    working_dir: str | None = None,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    on_status: Callable[[str], None] | None = None,
) -> SubmitResult:
    """Run ``medcrypt <args>`` as a Ray job at ``address`` (the dashboard URL) and wait.

    Args:
        working_dir: uploaded as the job's working directory (``.gitignore`` is honoured);
            relative paths in ``args`` (``-c job.yaml``) are relative to it.
        timeout_s: stop the job and return exit code 4 after this long (None: wait).

    Raises:
        JobError: the cluster could not be reached or refused the job (nothing ran).
    """
    client = _client(address)
    runtime_env = {"working_dir": working_dir} if working_dir else None
    # a head that has just started answers "No available agent to submit job, please try
    # again later" until its job agent is up (seen in the tests, and a cron line run right
    # after a cluster restart meets it too; a cold head on 2 cores took over a minute):
    # retried for up to three minutes, nothing else is
    submit = tenacity.retry(
        retry=tenacity.retry_if_exception(_agent_not_ready),
        wait=tenacity.wait_exponential(multiplier=0.5, max=8.0),
        stop=tenacity.stop_after_delay(180.0),
        before_sleep=lambda state: logger.info("Ray job agent not ready yet: retrying"),
        reraise=True,
    )(client.submit_job)
    try:
        job_id = submit(entrypoint=entrypoint(args), runtime_env=runtime_env)
    except Exception as exc:
        text = str(exc)
        hint = f"; {_AUTH_HINT}" if "auth" in text.lower() or "token" in text.lower() else ""
        raise JobError(f"the Ray cluster at {address} refused the job: {text}{hint}") from exc
    logger.info("submitted Ray job %s to %s", job_id, address)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status = ""
    while True:
        status = str(getattr(client.get_job_status(job_id), "value", ""))
        if on_status:
            on_status(status)
        if status in _TERMINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            logger.error("Ray job %s still %s after %ss: stopping it", job_id, status, timeout_s)
            client.stop_job(job_id)
            logs = str(client.get_job_logs(job_id))
            return SubmitResult(job_id, "TIMEOUT", EXIT_JOB_FAILED, logs)
        time.sleep(poll_s)
    logs = str(client.get_job_logs(job_id))
    return SubmitResult(job_id, status, exit_code_from_logs(status, logs), logs)
