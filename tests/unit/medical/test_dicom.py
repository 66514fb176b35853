"""DICOM series reading (geometry order, rescale) on a BraTS case converted in the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medcrypt.medical import load_case_slice, open_image, read_volume, write_dicom_series

BratsCase = Any  # the `brats` fixture items (tests/unit/medical/conftest.py)


@pytest.fixture(scope="module")
def dicom_case(
    brats: list[BratsCase], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Path]:
    """The tied BraTS case written as a DICOM series whose file names are shuffled."""
    case = next(c for c in brats if c.case_id.endswith("0005_1"))
    folder = tmp_path_factory.mktemp("dicom") / "series"
    write_dicom_series(
        case.image(), case.affine, folder, patient_name="Doe^Jane", shuffle_names_seed=3
    )
    return case, folder


@pytest.mark.timeout(120)
def test_dicom_series_gives_the_numpy_expected_slice(dicom_case: tuple[Any, Path]) -> None:
    case, folder = dicom_case
    counts = (case.mask() > 0).sum(axis=(0, 1))
    expected = int(np.flatnonzero(counts == counts.max())[0])
    s = load_case_slice(folder, case.mask_path, case_id="dicom")
    assert s.choice.stored_index == expected
    assert s.choice.canonical_index == expected
    assert len(s.choice.tied_indices) == 2
    reference = load_case_slice(case.image_path, case.mask_path, case_id="nifti")
    np.testing.assert_allclose(s.affine, reference.affine, atol=1e-6)
    np.testing.assert_allclose(s.choice.world_position, reference.choice.world_position)
    # uint16 storage of a ~10-unit range: values agree to one quantisation step
    step = float(np.ptp(case.image())) / 65535
    np.testing.assert_allclose(
        s.to_source_units(), reference.to_source_units(), atol=2 * step + 1e-6
    )


@pytest.mark.timeout(120)
def test_series_is_ordered_by_geometry_not_file_name(dicom_case: tuple[Any, Path]) -> None:
    case, folder = dicom_case
    names = sorted(p.name for p in folder.iterdir())
    first = pydicom.dcmread(folder / names[0], stop_before_pixels=True)
    assert int(first.InstanceNumber) != 1, "the fixture should shuffle file names"
    vol = read_volume(folder, case_id="dicom")
    np.testing.assert_allclose(vol.affine, case.affine, atol=1e-6)
    assert vol.axcodes == ("L", "P", "S")
    step = float(np.ptp(case.image())) / 65535
    assert np.abs(vol.array - case.image()).max() <= step  # rescale slope/intercept applied


def test_rescale_slope_and_intercept_are_applied(tmp_path: Path) -> None:
    vol = np.linspace(-500.0, 1500.0, 4 * 5 * 3).reshape(4, 5, 3)
    files = write_dicom_series(vol, np.diag([0.5, 0.7, 3.0, 1.0]), tmp_path / "s")
    ds = pydicom.dcmread(files[0])
    assert float(ds.RescaleSlope) != 1.0 and float(ds.RescaleIntercept) != 0.0
    src = open_image(tmp_path / "s", case_id="r")
    np.testing.assert_allclose(src.read_plane(2, 1), vol[:, :, 1], atol=float(ds.RescaleSlope))
    assert src.shape == (4, 5, 3)
    np.testing.assert_allclose(src.affine, np.diag([0.5, 0.7, 3.0, 1.0]), atol=1e-9)
