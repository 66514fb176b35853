"""What a quarantine reason or run-summary error may name: source URIs, never local copies."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from medcrypt.cluster._fetch import _as_source_error, _to_source
from medcrypt.cluster._stages import CaseState
from medcrypt.cluster._write import _without_work_files
from medcrypt.errors import DicomSeriesError, TransientStorageError


def _state() -> CaseState:
    return CaseState(
        case_id="c1",
        image_uri="s3://b/archive/c1/image/",
        mask_uri="s3://b/archive/c1/mask.nii.gz",
        image_root="s3://b/archive",
        image_key="c1/image/",
        mask_root="s3://b/archive",
        mask_key="c1/mask.nii.gz",
        label_given=None,
        prior_digests=[],
        has_record=False,
        was_quarantined=False,
    )


def test_local_copies_are_retold_as_their_source_objects() -> None:
    with tempfile.TemporaryDirectory(prefix="medcrypt-fetch-") as tmp:
        series, mask = Path(tmp) / "image" / "series", Path(tmp) / "mask" / "mask.nii.gz"
        copies = {
            str(series): "s3://b/archive/c1/image",
            str(mask): "s3://b/archive/c1/mask.nii.gz",
        }
        text = f"gap between {series}/IM_0002.dcm and {series}/IM_0004.dcm; mask {mask}; {tmp}/x"
        assert _to_source(text, copies, tmp) == (
            "gap between s3://b/archive/c1/image/IM_0002.dcm and "
            "s3://b/archive/c1/image/IM_0004.dcm; mask s3://b/archive/c1/mask.nii.gz; "
            "<downloaded copy>/x"
        )
        err = _as_source_error(
            DicomSeriesError("1 missing slice", case_id="c1", uri=str(series)),
            copies,
            tmp,
            _state(),
        )
        assert isinstance(err, DicomSeriesError)
        assert str(err) == "case 'c1', file 's3://b/archive/c1/image': 1 missing slice"
        # storage errors keep their type (a transient one is retried by the next run)
        kept = _as_source_error(
            TransientStorageError(f"reset writing {mask}"), copies, tmp, _state()
        )
        assert isinstance(kept, TransientStorageError) and tmp not in str(kept)
        other = _as_source_error(ValueError(f"bad header in {mask}"), copies, tmp, _state())
        assert str(other) == (
            "case 'c1', file 's3://b/archive/c1/image/': "
            "ValueError: bad header in s3://b/archive/c1/mask.nii.gz"
        )


def test_last_line_of_defence_removes_medcrypt_and_ray_temp_paths() -> None:
    tmp = tempfile.gettempdir()
    text = (
        f"see {os.path.join(tmp, 'ray', 'session_1', 'logs', 'w.err')} and "
        f"{os.path.join(tmp, 'medcrypt-fetch-x', 'image', 'a.nii.gz')}: s3://b/archive/c1/a.nii.gz"
    )
    assert _without_work_files(text) == (
        "see <local temp path> and <local temp path>: s3://b/archive/c1/a.nii.gz"
    )
