"""A session-scoped local MULTI-NODE Ray cluster for the archive-job tests.

One head node (CPU tasks: fetch, write) and two worker nodes that declare one GPU each, so the
encrypt stage's ``num_gpus=1`` actors are placed by Ray exactly as on a GPU cluster, while
torch runs on CPU. Started once per session (Ray start-up is slow on 2 cores) and shut down in
teardown. Register with ``pytest_plugins = ["tests.integration._ray_cluster"]`` or import the
fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: fault injection (read by the encrypt actors): a case with this id kills its worker process
#: every time it is encrypted. Set before the cluster starts so every raylet and worker has it.
FAULT_ENV = "MEDCRYPT_FAULT_KILL_CASES"
POISON_CASE = "poison_kills_worker"


@pytest.fixture(scope="session")
def ray_cluster(aws_env: dict[str, str]) -> Iterator[str]:
    """Address of a running 3-node local cluster (head + 2 nodes with ``{"GPU": 1}``).

    Depends on ``aws_env`` so every raylet and worker inherits the fake AWS credentials.
    """
    import ray
    from ray.cluster_utils import Cluster

    os.environ[FAULT_ENV] = POISON_CASE
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False},
    )
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes(timeout=180)
        ray.init(address=cluster.address, log_to_driver=False)
        gpus = ray.cluster_resources().get("GPU", 0)
        assert gpus == 2, f"expected 2 declared GPUs in the test cluster, got {gpus}"
        yield str(cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()


def encrypt_actor_pids() -> list[int]:
    """PIDs of live encrypt-stage actor processes (Ray titles them after the callable class)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if b"EncryptActor" in cmd and b"pytest" not in cmd:
            pids.append(int(entry))
    return pids
