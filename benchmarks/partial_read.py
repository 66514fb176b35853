"""Partial read vs full read: choosing and reading one slice of a real BraTS case.

For each case and storage (the original ``.nii.gz`` through indexed_gzip, an uncompressed
``.nii`` copy read through a memory map, and a DICOM series copy) it times:

* partial: ``load_case_slice`` (read the mask, choose the slice, read only that image plane);
* full: read the whole image and mask, choose the slice, cut it out of the in-memory volume
  (``read_volume`` + ``read_mask`` + ``choose_slice`` + ``extract_slice``);

and, for the image alone, reading the chosen plane (``open_image(...).read_plane``) vs the
whole volume (``read_all``), both copied into memory so a memory map is really read. It
prints the median of ``--repeats`` runs and the speed-ups full / partial. Both case paths
return identical slices (checked). Copies go to a temporary folder, removed afterwards. The
files are read repeatedly, so they sit in the OS page cache: this measures decoding and
copying, not disk.

    python benchmarks/partial_read.py [--data ../shared/data/brats2015-sample] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medcrypt.medical import (
    choose_slice,
    extract_slice,
    load_case_slice,
    open_image,
    read_mask,
    read_volume,
    write_dicom_series,
)
from medcrypt.medical._values import Slice

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brats2015-sample"
IMAGE, MASK = "T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz"


def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    assert out is not None
    return statistics.median(times), out


def _partial(image: Path, mask: Path) -> Slice:
    return load_case_slice(image, mask, case_id="bench")


def _full(image: Path, mask: Path) -> Slice:
    vol = read_volume(image, case_id="bench")
    labels = read_mask(mask, case_id="bench", reference=vol)
    choice = choose_slice(labels.array, vol.affine, case_id="bench")
    return extract_slice(vol, choice, case_id="bench")


def _plane(image: Path, axis: int, index: int) -> np.ndarray:
    return np.array(open_image(image).read_plane(axis, index))


def _volume(image: Path) -> np.ndarray:
    return np.array(open_image(image).read_all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=4, help="how many cases to time")
    parser.add_argument("--no-dicom", action="store_true", help="skip the DICOM series copy")
    args = parser.parse_args()
    cases = sorted(p for p in args.data.glob("brats_*") if p.is_dir())[: args.cases]
    if not cases:
        raise SystemExit(f"no brats_* case folders under {args.data}")
    rows: list[tuple[str, str, float, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="medcrypt-bench-") as tmp:
        for case in cases:
            gz, gz_mask = case / IMAGE, case / MASK
            img: Any = nib.load(gz)
            msk: Any = nib.load(gz_mask)
            data = np.asarray(img.dataobj)
            plain, plain_mask = Path(tmp) / f"{case.name}.nii", Path(tmp) / f"{case.name}_m.nii"
            nib.save(nib.Nifti1Image(data, img.affine, img.header), plain)
            nib.save(nib.Nifti1Image(np.asarray(msk.dataobj), msk.affine, msk.header), plain_mask)
            storages = [
                ("nii.gz (indexed_gzip)", gz, gz_mask),
                ("nii (memory map)", plain, plain_mask),
            ]
            if not args.no_dicom:
                series = Path(tmp) / f"{case.name}_dicom"
                write_dicom_series(data, img.affine, series, uid_entropy=[case.name])
                storages.append(("DICOM series", series, gz_mask))
            for label, image, mask in storages:
                t_part, s_part = _median_time(partial(_partial, image, mask), args.repeats)
                t_full, s_full = _median_time(partial(_full, image, mask), args.repeats)
                assert isinstance(s_part, Slice) and isinstance(s_full, Slice)
                if s_part.choice != s_full.choice or not np.array_equal(s_part.array, s_full.array):
                    raise SystemExit(f"{case.name} {label}: partial and full reads disagree")
                ax, k = s_part.choice.axis, s_part.choice.stored_index
                t_plane, _ = _median_time(partial(_plane, image, ax, k), args.repeats)
                t_vol, _ = _median_time(partial(_volume, image), args.repeats)
                rows.append((case.name, label, t_part, t_full, t_plane, t_vol))
    print(
        f"{'case':22s} {'storage':22s} {'case: partial':>13s} {'full':>7s} {'speed-up':>8s}"
        f" {'image: plane':>13s} {'volume':>7s} {'speed-up':>8s}"
    )
    for name, label, t_part, t_full, t_plane, t_vol in rows:
        print(
            f"{name:22s} {label:22s} {t_part:12.3f}s {t_full:6.3f}s {t_full / t_part:7.2f}x"
            f" {t_plane:12.4f}s {t_vol:6.3f}s {t_vol / t_plane:7.1f}x"
        )
    print()
    for label in dict.fromkeys(r[1] for r in rows):
        sel = [r for r in rows if r[1] == label]
        part, full = sum(r[2] for r in sel), sum(r[3] for r in sel)
        plane, vol = sum(r[4] for r in sel), sum(r[5] for r in sel)
        print(
            f"{label:22s} choose+read one slice: partial {part:.3f} s vs full {full:.3f} s "
            f"= {full / part:.2f}x; image only: {vol / plane:.1f}x"
        )


if __name__ == "__main__":
    main()
