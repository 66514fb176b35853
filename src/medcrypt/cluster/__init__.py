"""medcrypt.cluster: the Ray Data archive job (see DESIGN.md at the repository root, and
docs/internals.md).

``run_job(config)`` streams manifest rows through fetch (CPU tasks) -> PGD + combiner (GPU
actor pool) -> quantise/encode/write (CPU tasks) and returns a :class:`RunSummary`; records
are :class:`CaseRecord` / :class:`QuarantineRecord` under dest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcrypt._lazy import lazy_exports

if TYPE_CHECKING:
    from medcrypt.cluster._config import OUTPUT_FORMATS, JobConfig, OutputFormat
    from medcrypt.cluster._config_load import (
        CliOption,
        cli_overrides,
        job_cli_options,
        job_config_from_mapping,
        load_job_config,
    )
    from medcrypt.cluster._discover import LAYOUTS, DiscoverSummary, Layout, discover
    from medcrypt.cluster._job import JobInputs, PlanEntry, plan_job, prepare_job, run_job
    from medcrypt.cluster._manifest import (
        MANIFEST_COLUMNS,
        Manifest,
        ManifestRow,
        read_manifest,
        write_manifest,
    )
    from medcrypt.cluster._records import (
        CaseRecord,
        CaseTimings,
        OutputObject,
        ProtectionMetrics,
        QuarantineRecord,
        SliceInfo,
        SourceObject,
    )
    from medcrypt.cluster._summary import (
        EXIT_JOB_FAILED,
        EXIT_OK,
        EXIT_QUARANTINED,
        RunSummary,
        StageTimings,
    )
else:  # each name is imported from its module on first use (medcrypt/_lazy.py)
    __getattr__, __dir__ = lazy_exports(__name__, __file__)

__all__: list[str] = []
__all__ += [
    "EXIT_JOB_FAILED",
    "EXIT_OK",
    "EXIT_QUARANTINED",
    "CaseRecord",
    "CaseTimings",
    "JobInputs",
    "OutputObject",
    "PlanEntry",
    "ProtectionMetrics",
    "QuarantineRecord",
    "RunSummary",
    "SliceInfo",
    "SourceObject",
    "StageTimings",
    "plan_job",
    "prepare_job",
    "run_job",
]
__all__ += [
    "LAYOUTS",
    "MANIFEST_COLUMNS",
    "OUTPUT_FORMATS",
    "CliOption",
    "DiscoverSummary",
    "JobConfig",
    "Layout",
    "Manifest",
    "ManifestRow",
    "OutputFormat",
    "cli_overrides",
    "discover",
    "job_cli_options",
    "job_config_from_mapping",
    "load_job_config",
    "read_manifest",
    "write_manifest",
]
