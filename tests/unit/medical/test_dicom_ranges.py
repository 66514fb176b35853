"""Every DICOM output passes dciodvfy whatever its intensity range (issue 15, item 8)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcrypt.medical import encode_dicom_slice, load_case_slice, write_phantom_case


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("scale", [1e-9, 1e-3, 0.5, 1.0, 3.0, 1e3, 1e6, -1e3])
def test_a_phantom_slice_at_any_range_passes_dciodvfy(tmp_path: Path, scale: float) -> None:
    image, mask = write_phantom_case(tmp_path / "case", label=2, seed=4, shape=(32, 32, 8))
    img = nib.load(image)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * scale, img.affine), image)
    s = load_case_slice(image, mask, case_id="c1")
    out = tmp_path / "out.dcm"
    out.write_bytes(encode_dicom_slice(s.array, s, series_description="medcrypt protected"))
    report = subprocess.run(
        ["dciodvfy", str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    text = report.stdout + report.stderr
    assert "SCImage" in text
    assert [line for line in text.splitlines() if line.startswith("Error")] == [], text
    ds = pydicom.dcmread(out)
    lo, hi = s.window
    assert ds.VOILUTFunction == "LINEAR_EXACT"
    # the window is the normalisation window, in source units
    assert float(ds.WindowWidth) == pytest.approx(max(hi - lo, 1e-6), rel=1e-6)
    assert float(ds.WindowCenter) == pytest.approx((lo + hi) / 2, rel=1e-6, abs=1e-12)
