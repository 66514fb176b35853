"""The cases the archive-job tests run on, built in one place (issue 20, item 4).

- the data owner's files: a tiny base model and keys (:func:`save_owner`);
- phantom cases (NIfTI, or DICOM series when the case id says ``dicom``) uploaded to S3 with
  their manifest rows (:func:`upload_phantoms`), broken ones next to them
  (:func:`upload_broken`, or ``corrupt=`` there) and the manifest itself (:func:`put_manifest`);
- a case-folders archive of *identified* cases (known patient name, id, birth date and UIDs)
  and of broken NIfTI / DICOM cases, for the no-leak test (:func:`build_identified_archive`);
- reading dest back (:func:`list_objects`, :func:`object_bodies`, :func:`get_object`).

``test_job.py``, ``test_job_release.py`` and ``test_job_reruns.py`` use them; each keeps its
own seeds and shapes, so each module's archive is what it was before this module existed.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom

from medcrypt.medical import CLASS_NAMES, write_dicom_series, write_phantom_case
from medcrypt.processing import EncryptionKey, PGDSettings, build_model, save_checkpoint

__all__ = [
    "BIRTH_DATE",
    "PATIENT_ID",
    "PATIENT_NAME",
    "build_identified_archive",
    "get_object",
    "list_objects",
    "new_bucket",
    "object_bodies",
    "put_manifest",
    "save_owner",
    "upload_broken",
    "upload_dir",
    "upload_phantoms",
]

#: what the identified cases carry, and what must never reach dest
PATIENT_NAME = "Quinnella^Zebedee"
PATIENT_ID = "MRN-4815162342"
BIRTH_DATE = "19610923"

_NOT_A_VOLUME = b"\x1f\x8bnot a volume"


# -- the data owner ------------------------------------------------------------------------------


def save_owner(d: Path, keys: Mapping[str, tuple[int, PGDSettings]]) -> dict[str, Any]:
    """A resnet18 base model of width 8 (``d/model.pt``) and one mixup key per entry of
    ``keys`` (name -> (seed, PGD settings)) at ``d/<name>.json``.

    Returns ``model`` and ``hash`` (the checkpoint), ``dir``, per key ``<name>`` (its path),
    and ``keys`` (name -> the :class:`EncryptionKey`).
    """
    model = build_model("resnet18", len(CLASS_NAMES), width=8)
    digest = save_checkpoint(
        d / "model.pt", model, arch="resnet18", class_names=CLASS_NAMES, width=8
    )
    out: dict[str, Any] = {"dir": d, "model": d / "model.pt", "hash": digest, "keys": {}}
    for name, (seed, pgd) in keys.items():
        key = EncryptionKey.generate(CLASS_NAMES, combiner="mixup", seed=seed, pgd=pgd)
        key.save(d / f"{name}.json")
        out[name] = d / f"{name}.json"
        out["keys"][name] = key
    return out


# -- S3-hosted cases -----------------------------------------------------------------------------


def new_bucket(s3: Any, stem: str) -> str:
    """A fresh bucket on the moto server; its name (``<stem>-<random>``)."""
    name = f"{stem}-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def upload_dir(s3: Any, bucket: str, local: Path, prefix: str) -> None:
    """Every file under ``local`` to ``prefix/<relative path>``."""
    for p in sorted(local.rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(local).as_posix()}")


def upload_phantoms(
    s3: Any,
    bucket: str,
    local: Path,
    cases: Sequence[str],
    *,
    seed: int,
    shape: tuple[int, int, int],
    corrupt: Collection[str] = (),
) -> list[dict[str, str]]:
    """Phantom cases ``archive/<case>/...`` and their manifest rows.

    Case ``i`` has label ``i % 5`` and seed ``seed + i``; a case id containing ``dicom`` is a
    DICOM series folder, any other NIfTI. A case in ``corrupt`` gets bytes that are not a
    volume as its image (its mask stays good).
    """
    rows = []
    for i, case in enumerate(cases):
        fmt = "dicom" if "dicom" in case else "nifti"
        image, mask = write_phantom_case(
            local / case, label=i % 5, seed=seed + i, fmt=fmt, shape=shape
        )
        if case in corrupt:
            image.write_bytes(_NOT_A_VOLUME)
        upload_dir(s3, bucket, local / case, f"archive/{case}")
        rel = image.relative_to(local).as_posix() + ("/" if image.is_dir() else "")
        rows.append(
            {
                "case_id": case,
                "image": rel,
                "mask": mask.relative_to(local).as_posix(),
                "label": CLASS_NAMES[i % 5],
            }
        )
    return rows


def upload_broken(s3: Any, bucket: str, local: Path, donors: Sequence[str]) -> list[dict[str, str]]:
    """``corrupt_image`` (image bytes that are not gzip, the first donor's mask) and
    ``empty_mask`` (the second donor's image, a mask without a tumour voxel), from two NIfTI
    phantoms already written under ``local``; their manifest rows (label meningioma)."""
    first, second = donors
    s3.put_object(Bucket=bucket, Key="archive/corrupt_image/image.nii.gz", Body=b"\x1f\x8bnope")
    s3.upload_file(str(local / first / "mask.nii.gz"), bucket, "archive/corrupt_image/mask.nii.gz")
    mask_img = nib.load(local / second / "mask.nii.gz")
    empty = nib.Nifti1Image(np.zeros(mask_img.shape, np.uint8), mask_img.affine)
    nib.save(empty, local / "empty_mask.nii.gz")
    s3.upload_file(str(local / second / "image.nii.gz"), bucket, "archive/empty_mask/image.nii.gz")
    s3.upload_file(str(local / "empty_mask.nii.gz"), bucket, "archive/empty_mask/mask.nii.gz")
    return [
        {
            "case_id": case_id,
            "image": f"{case_id}/image.nii.gz",
            "mask": f"{case_id}/mask.nii.gz",
            "label": "meningioma",
        }
        for case_id in ("corrupt_image", "empty_mask")
    ]


def put_manifest(s3: Any, bucket: str, rows: Sequence[Mapping[str, str]]) -> None:
    """``manifest.csv`` at the bucket's root (columns case_id, image, mask, label)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["case_id", "image", "mask", "label"])
    writer.writeheader()
    writer.writerows(rows)
    s3.put_object(Bucket=bucket, Key="manifest.csv", Body=buf.getvalue().encode())


# -- reading dest back ---------------------------------------------------------------------------


def list_objects(s3: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Key under ``prefix/`` -> its listing entry."""
    out: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix) + 1 :]] = obj
    return out


def get_object(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def object_bodies(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    """Key under ``prefix/`` -> its bytes."""
    return {
        k: get_object(s3, bucket, obj["Key"]) for k, obj in list_objects(s3, bucket, prefix).items()
    }


# -- identified and broken case folders ------------------------------------------------------------


def identified_series(volume: np.ndarray, affine: np.ndarray, folder: Path, tag: str) -> None:
    """A DICOM series carrying the known patient identifiers (and their own UIDs)."""
    files = write_dicom_series(
        volume, affine, folder, patient_name=PATIENT_NAME, patient_id=PATIENT_ID, uid_entropy=[tag]
    )
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PatientBirthDate = BIRTH_DATE
        ds.save_as(f)


def build_identified_archive(root: Path) -> dict[str, Any]:
    """Good and broken case folders (case-folders layout) and what must never leak.

    Returns ``good`` (case ids), ``broken`` (case id -> what is wrong), ``left_out`` (folders
    that are not cases) and ``uids`` (every DICOM UID written).
    """
    good: list[str] = []
    broken: dict[str, str] = {}  # case -> what is wrong

    def phantom(case: str, *, scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, Any]:
        image, _ = write_phantom_case(root / case, label=seed % 5, seed=seed, shape=(32, 32, 8))
        img = nib.load(image)
        data = np.asarray(img.dataobj, dtype=np.float32) * scale
        nib.save(nib.Nifti1Image(data, img.affine), image)
        return data, img.affine

    def as_dicom(case: str, data: np.ndarray, affine: Any, tag: str) -> Path:
        (root / case / "image.nii.gz").unlink()
        folder = root / case / "image"
        identified_series(data, affine, folder, tag)
        return folder

    # good: NIfTI and identified DICOM, wide (x1000) and narrow (x0.001) intensity ranges
    phantom("good_nifti_wide", scale=1000.0, seed=1)
    phantom("good_nifti_narrow", scale=1e-3, seed=2)
    for case, scale, seed in (("good_dicom_wide", 1000.0, 3), ("good_dicom_narrow", 1e-3, 4)):
        data, aff = phantom(case, scale=scale, seed=seed)
        as_dicom(case, data, aff, case)
    good += ["good_nifti_wide", "good_nifti_narrow", "good_dicom_wide", "good_dicom_narrow"]

    # broken NIfTI
    phantom("corrupt_image", seed=5)
    (root / "corrupt_image" / "image.nii.gz").write_bytes(_NOT_A_VOLUME)
    phantom("truncated_image", seed=6)
    raw = (root / "truncated_image" / "image.nii.gz").read_bytes()
    (root / "truncated_image" / "image.nii.gz").write_bytes(raw[: len(raw) // 2])
    data, aff = phantom("empty_mask", seed=7)
    nib.save(nib.Nifti1Image(np.zeros(data.shape, np.uint8), aff), root / "empty_mask/mask.nii.gz")
    data, aff = phantom("grid_mismatch", seed=8)
    elsewhere = np.array(aff, dtype=np.float64)
    elsewhere[:3, 3] += 500.0  # a mask of another scan: no overlap in world space
    mask = np.ones(data.shape, np.uint8)
    nib.save(nib.Nifti1Image(mask, elsewhere), root / "grid_mismatch" / "mask.nii.gz")
    data, aff = phantom("nan_image", seed=9)
    data[0, 0, :] = np.nan
    nib.save(nib.Nifti1Image(data, aff), root / "nan_image" / "image.nii.gz")
    broken.update(
        corrupt_image="not gzip",
        truncated_image="cut in half",
        empty_mask="no tumour voxel",
        grid_mismatch="mask on another grid",
        nan_image="NaN voxels",
    )

    # broken DICOM, every one carrying the patient identifiers
    data, aff = phantom("mixed_series", seed=10)
    folder = as_dicom("mixed_series", data, aff, "mixed-a")
    identified_series(data[:, :, :4], aff, root / "mixed_b", "mixed-b")
    for f in sorted((root / "mixed_b").iterdir()):
        f.rename(folder / f"B_{f.name}")
    (root / "mixed_b").rmdir()
    data, aff = phantom("missing_slice", seed=11)
    folder = as_dicom("missing_slice", data, aff, "missing")
    sorted(folder.iterdir())[3].unlink()
    data, aff = phantom("no_pixel_data", seed=12)
    folder = as_dicom("no_pixel_data", data, aff, "nopix")
    victim = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    data, aff = phantom("two_acquisitions", seed=13)
    folder = as_dicom("two_acquisitions", data, aff, "acq")
    ds = pydicom.dcmread(sorted(folder.iterdir())[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["echo-2"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.EchoNumbers = 2
    ds.save_as(folder / "echo2.dcm")
    phantom("not_dicom", seed=14)
    (root / "not_dicom" / "image.nii.gz").unlink()
    (root / "not_dicom" / "image").mkdir()
    (root / "not_dicom" / "image" / "IM_0000.dcm").write_bytes(
        f"{PATIENT_NAME} {PATIENT_ID} is not DICOM".encode()
    )
    broken.update(
        mixed_series="two series in one folder",
        missing_slice="a gap in the series",
        no_pixel_data="an object without pixels",
        two_acquisitions="two acquisitions under one series UID",
        not_dicom="a file that is not DICOM",
    )

    # folders that are not cases: discovery leaves them out, the job must say so
    phantom("no_mask_case", seed=15)
    (root / "no_mask_case" / "mask.nii.gz").unlink()
    phantom("bad name (copy)", seed=16)
    left_out = ["no_mask_case", "bad name (copy)"]

    uids: set[str] = set()
    for f in root.rglob("*.dcm"):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            uids.add(str(ds.get(kw, "")))
        uids.add(str(ds.get("FrameOfReferenceUID", "")))
    uids.discard("")
    return {"good": good, "broken": broken, "left_out": left_out, "uids": sorted(uids)}
