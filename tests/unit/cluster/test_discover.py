"""discover(): manifests from the BraTS layout (real data) and the case-folder layout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medcrypt.cluster._discover import _Rows, discover
from medcrypt.cluster._manifest import read_manifest
from medcrypt.errors import ConfigError, ManifestError
from medcrypt.storage import LocalStore, ObjectInfo

NAMES = ("meningioma", "chordoma", "schwannoma")


def _touch(root: Path, *keys: str, data: bytes = b"x") -> None:
    for key in keys:
        p = root.joinpath(*key.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_brats_layout_on_the_real_cases(brats_cases: list[Path], tmp_path: Path) -> None:
    source = LocalStore(brats_cases[0].parent)
    out = tmp_path / "manifest.csv"
    summary = discover(source, layout="brats", out=out)
    assert (summary.cases, summary.skipped) == (4, 0)
    rows = list(read_manifest(out, source=source.uri, class_names=NAMES))
    assert [r.case_id for r in rows] == [p.name for p in brats_cases]
    for row, case in zip(rows, brats_cases, strict=True):
        assert row.image == f"{case.name}/T1c_subtrMeanDivStd.nii.gz"
        assert row.mask == f"{case.name}/OTMultiClass.nii.gz"
        assert row.label is None
        assert (case / "T1c_subtrMeanDivStd.nii.gz").is_file()


def test_brats_layout_at_any_depth_and_incomplete_cases(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _touch(
        src,
        "HGG/pat1/T1c_subtrMeanDivStd.nii.gz",
        "HGG/pat1/OTMultiClass.nii.gz",
        "HGG/pat1/brainmask.nii.gz",
        "LGG/pat2/T1c_subtrMeanDivStd.nii.gz",  # no mask
        "LGG/pat3/OTMultiClass.nii.gz",  # no image
        "LGG/pat1/T1c_subtrMeanDivStd.nii.gz",  # repeats case id pat1
        "LGG/pat1/OTMultiClass.nii.gz",
        "README.txt",
    )
    out = tmp_path / "m.csv"
    summary = discover(LocalStore(src), layout="brats", out=out)
    rows = list(read_manifest(out, source=str(src), class_names=NAMES))
    assert [(r.case_id, r.image) for r in rows] == [("pat1", "HGG/pat1/T1c_subtrMeanDivStd.nii.gz")]
    assert summary.skipped == 3
    assert set(summary.reasons) == {
        "LGG/pat1: case id 'pat1' already used by another folder",
        "LGG/pat2: no mask",
        "LGG/pat3: no image",
    }


def test_case_folder_layout_with_dicom_series_and_labels(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _touch(
        src,
        "c1/image.nii.gz",
        "c1/mask.nii.gz",
        "c2/image/IM0001.dcm",
        "c2/image/IM0002.dcm",
        "c2/mask.nii.gz",
        "c2-b/image/1.2.840.1",  # DICOM named by UID
        "c2-b/image/.DS_Store",  # hidden: ignored
        "c2-b/image/sub/IM1",  # not directly in image/: ignored
        "c2-b/mask.nii",
        "c3/image.nii.gz",  # no mask
        "c4/image.nii.gz",
        "c4/image/IM1.dcm",  # ambiguous
        "c4/mask.nii.gz",
        "bad id!/image.nii.gz",
        "bad id!/mask.nii.gz",
    )
    (src / "labels.csv").write_text(
        "case_id,label\nc1,chordoma\nc2,\nc2-b,schwannoma\nghost,meningioma\n", encoding="utf-8"
    )
    out = tmp_path / "m.csv"
    summary = discover(LocalStore(src), layout="case-folders", out=out, class_names=NAMES)
    rows = list(read_manifest(out, source=str(src), class_names=NAMES))
    assert [(r.case_id, r.image, r.mask, r.label) for r in rows] == [
        ("c1", "c1/image.nii.gz", "c1/mask.nii.gz", "chordoma"),
        ("c2-b", "c2-b/image/", "c2-b/mask.nii", "schwannoma"),  # S3 key order: '-' < '/'
        ("c2", "c2/image/", "c2/mask.nii.gz", None),
    ]
    assert rows[1].image_is_series and rows[2].image_is_series
    assert summary.cases == 3 and summary.skipped == 3
    assert set(summary.reasons) == {
        "bad id!: folder name 'bad id!' is not a valid case id",
        "c3: no mask",
        "c4: both an image file and an image/ DICOM series folder",
    }


@pytest.mark.timeout(120)
def test_case_folder_layout_on_a_phantom_archive(tmp_path: Path) -> None:
    from medcrypt.medical import CLASS_NAMES, write_phantom_archive

    src = tmp_path / "phantoms"
    write_phantom_archive(src, n_cases=4, seed=3, formats=("nifti", "dicom"), shape=(16, 16, 6))
    out = tmp_path / "m.csv"
    summary = discover(LocalStore(src), layout="case-folders", out=out)
    assert (summary.cases, summary.skipped) == (4, 0)
    rows = list(read_manifest(out, source=str(src)))
    assert [r.case_id for r in rows] == [f"case_{i:04d}" for i in range(4)]
    assert [r.label_index for r in rows] == [0, 1, 2, 3]  # the archive's labels: i % 5
    assert [r.label for r in rows] == list(CLASS_NAMES[:4])
    assert [r.image_is_series for r in rows] == [False, True, False, True]
    for r in rows:
        image = src / r.image
        if r.image_is_series:
            assert image.is_dir() and any(p.suffix == ".dcm" for p in image.iterdir())
        else:
            assert image.is_file() and image.name == "image.nii.gz"
        assert (src / r.mask).is_file()


def test_bad_labels_file_lists_every_problem(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _touch(src, "c1/image.nii.gz", "c1/mask.nii.gz")
    (src / "labels.csv").write_text(
        "case_id,label\nc1,glioma\nc1,chordoma\nc2,a,b\n", encoding="utf-8"
    )
    with pytest.raises(ManifestError) as err:
        discover(LocalStore(src), layout="case-folders", out=tmp_path / "m.csv", class_names=NAMES)
    assert err.value.problems == [
        "line 2: label: expected one of meningioma, chordoma, schwannoma (or empty), got 'glioma'",
        "line 4: expected 2 values, got 3",
    ]
    assert not (tmp_path / "m.csv").exists()


def test_unknown_layout_and_bad_out(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="layout: expected one of brats, case-folders"):
        discover(LocalStore(tmp_path), layout="flat", out=tmp_path / "m.csv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\.csv"):
        discover(LocalStore(tmp_path), layout="brats", out=tmp_path / "m.txt")


class _CountingStore:
    """A listing-only store that counts how far the listing has been consumed."""

    uri = "/virtual"

    def __init__(self, n: int) -> None:
        self.n = n
        self.consumed = 0

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for i in range(self.n):
            for name in ("image.nii.gz", "mask.nii.gz"):
                self.consumed += 1
                yield ObjectInfo(key=f"case{i:06d}/{name}", size=1, mtime=0.0)


def test_discovery_streams_the_listing() -> None:
    store = _CountingStore(10_000)
    rows = _Rows(store, "case-folders", "", {}, lambda folder, why: None)  # type: ignore[arg-type]
    first = next(rows)
    assert first.case_id == "case000000"
    assert store.consumed == 3  # the first case was emitted as soon as the next one began
    assert sum(1 for _ in rows) == 9_999
