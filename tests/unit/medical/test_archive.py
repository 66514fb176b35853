"""Phantom archives: every orientation and format gives the same anatomical slice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medcrypt.cli import main
from medcrypt.medical import (
    PHANTOM_ORIENTATIONS,
    load_case_slice,
    make_phantom_volume,
    write_phantom_archive,
    write_phantom_case,
)

SHAPE = (32, 32, 12)


@pytest.mark.timeout(120)
def test_all_orientations_and_formats_choose_the_same_anatomy(tmp_path: Path) -> None:
    _, mask, affine = make_phantom_volume(3, shape=SHAPE, seed=11)
    counts = (mask > 0).sum(axis=(0, 1))  # the generator stores RAS: z is the third axis
    expected = int(np.flatnonzero(counts == counts.max())[0])
    first = None
    for orientation in PHANTOM_ORIENTATIONS:
        for fmt in ("nifti", "dicom"):
            image, mask_path = write_phantom_case(
                tmp_path / f"{orientation}_{fmt}",
                label=3,
                seed=11,
                fmt=fmt,  # type: ignore[arg-type]
                orientation=orientation,
                shape=SHAPE,
            )
            assert nib.aff2axcodes(nib.load(mask_path).affine) == tuple(orientation)
            assert image.is_dir() == (fmt == "dicom")
            s = load_case_slice(image, mask_path, case_id=f"{orientation}-{fmt}")
            assert s.choice.canonical_index == expected, (orientation, fmt)
            assert s.choice.axis == orientation.index("S" if "S" in orientation else "I")
            assert s.choice.area_mm2 == pytest.approx(
                counts.max() * abs(affine[0, 0] * affine[1, 1])
            )
            if first is None:
                first = s
                continue
            np.testing.assert_allclose(
                s.choice.world_position, first.choice.world_position, atol=1e-4
            )
            np.testing.assert_allclose(s.affine, first.affine, atol=1e-4)
            # DICOM stores 16-bit codes: same picture to within a code
            np.testing.assert_allclose(
                s.to_source_units(), first.to_source_units(), atol=2.0 / 65535
            )


def test_archive_layout_and_labels(tmp_path: Path) -> None:
    labels = write_phantom_archive(
        tmp_path / "a", n_cases=3, seed=1, formats=("nifti", "dicom"), shape=SHAPE
    )
    with labels.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [
        {"case_id": "case_0000", "label": "0"},
        {"case_id": "case_0001", "label": "1"},
        {"case_id": "case_0002", "label": "2"},
    ]
    root = tmp_path / "a"
    assert (root / "case_0000" / "image.nii.gz").is_file()
    assert len(list((root / "case_0001" / "image").glob("*.dcm"))) > 0
    assert all((root / r["case_id"] / "mask.nii.gz").is_file() for r in rows)


def test_bad_orientation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="axis codes"):
        write_phantom_case(tmp_path, label=0, seed=0, orientation="LLS", shape=SHAPE)


@pytest.mark.timeout(120)
def test_cli_slice_json_and_phantom_archive(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "-q",
            "phantom-archive",
            "--out",
            str(tmp_path / "arch"),
            "--cases",
            "2",
            "--formats",
            "dicom,nifti",
            "--shape",
            "32,32,12",
            "--seed",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    case = tmp_path / "arch" / "case_0000"
    res = runner.invoke(
        main,
        ["slice", "--image", str(case / "image"), "--mask", str(case / "mask.nii.gz"), "--json"],
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    direct = load_case_slice(case / "image", case / "mask.nii.gz", case_id="x")
    assert info["stored_index"] == direct.choice.stored_index
    assert info["canonical_index"] == direct.choice.canonical_index
    assert info["area_mm2"] == pytest.approx(direct.choice.area_mm2)
    assert info["tie"] == (len(direct.choice.tied_indices) > 1)
    assert len(info["world_position"]) == 3
    # a bad input is a one-line error naming the case, exit code 2
    empty = tmp_path / "empty.nii.gz"
    m = nib.load(case / "mask.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(m.shape, np.uint8), m.affine), empty)
    res = runner.invoke(
        main, ["slice", "--image", str(case / "image"), "--mask", str(empty), "--case-id", "c9"]
    )
    assert res.exit_code == 2
    assert "case 'c9'" in res.output and "empty tumour mask" in res.output
