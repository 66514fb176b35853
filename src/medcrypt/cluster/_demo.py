"""The embedded default: a whole archive job on local folders with local Ray, in minutes on CPU.

:func:`run_demo` writes a phantom archive (some cases as DICOM series, one deliberately
broken so quarantine shows), generates a key (the default mode, unlearnable) and crafts its
surrogate on phantom slices, runs the real :func:`run_job`, then a small protection evaluation
of the mode it released (:func:`medcrypt.cluster._demo_protection.run_demo_protection`). It
returns what the CLI reports and turns into pages. Secrets (key) and the model live under
``<out>/secrets``, never under the dest.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcrypt._types import ProgressCallback
from medcrypt.cluster._summary import RunSummary

__all__ = ["BROKEN_CASE", "DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

_SHAPE = (64, 64, 16)

#: the demo archive's deliberately broken case: its image file is cut in half, so the job
#: must quarantine it with a reason and carry on
BROKEN_CASE = "broken_000"

StepCallback = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    """What the demo made and where."""

    summary: RunSummary
    archive: Path
    dest: Path
    manifest: Path
    #: ground-truth labels of every intact case (case_id,label): the reader study's truth
    labels: Path
    key: Path
    model: Path
    mean_psnr: float
    mean_ssim: float
    base_accuracy: float
    #: protection report JSON files, one per budget, lowest budget first
    protection: tuple[Path, ...] = ()
    broken_cases: tuple[str, ...] = (BROKEN_CASE,)


def _write_archive(archive: Path, n_cases: int, n_dicom: int, seed: int) -> Path:
    from medcrypt.medical import CLASS_NAMES, write_phantom_case

    manifest = archive.parent / "manifest.csv"
    rows, truth = [], []
    for i in range(n_cases):
        case_id = f"phantom_{i:03d}"
        label = i % 5
        fmt = "dicom" if i < n_dicom else "nifti"
        image, mask = write_phantom_case(
            archive / case_id, label=label, seed=seed + i, fmt=fmt, shape=_SHAPE
        )
        # every other case unlabelled: the job predicts its label with the base model
        rows.append(
            {
                "case_id": case_id,
                "image": image.relative_to(archive).as_posix(),
                "mask": mask.relative_to(archive).as_posix(),
                "label": "" if i % 2 else str(label),
            }
        )
        truth.append({"case_id": case_id, "label": CLASS_NAMES[label]})
    # the broken case: a valid mask, an image file cut off half way (a failed transfer)
    image, mask = write_phantom_case(
        archive / BROKEN_CASE, label=0, seed=seed + 999, fmt="nifti", shape=_SHAPE
    )
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    rows.append(
        {
            "case_id": BROKEN_CASE,
            "image": image.relative_to(archive).as_posix(),
            "mask": mask.relative_to(archive).as_posix(),
            "label": "0",
        }
    )
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case_id", "image", "mask", "label"])
        writer.writeheader()
        writer.writerows(rows)
    with (archive.parent / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case_id", "label"])
        writer.writeheader()
        writer.writerows(truth)
    return manifest


def _craft(
    path: Path, key_path: Path, seed: int, progress: ProgressCallback | None, *, reuse: bool
) -> float:
    """The demo key's min-min surrogate (what ``medcrypt craft`` does) on phantom slices,
    named in the key; returns its accuracy on clean test phantoms."""
    from medcrypt.medical import CLASS_NAMES, make_phantom_slices
    from medcrypt.processing import (
        EncryptionKey,
        MinMinSettings,
        craft_surrogate,
        evaluate_accuracy,
        foreground_masks,
        load_checkpoint,
        save_checkpoint,
    )

    test_x, test_y = make_phantom_slices(10, size=_SHAPE[0], seed=seed + 1)
    if reuse:
        return evaluate_accuracy(load_checkpoint(path).model, test_x, test_y, device="cpu")
    images, labels = make_phantom_slices(24, size=_SHAPE[0], seed=seed)
    key = EncryptionKey.load(key_path)
    result = craft_surrogate(
        images,
        labels,
        n_classes=len(CLASS_NAMES),
        settings=key.pgd,
        minmin=MinMinSettings(width=8, max_rounds=8),
        masks=foreground_masks(images),
        seed=seed,
        device="cpu",
        progress=progress,
    )
    model = result.models[0]
    digest = save_checkpoint(path, model, arch="cnn", class_names=CLASS_NAMES, width=8)
    key.with_surrogate([digest]).save(key_path, overwrite=True)
    return evaluate_accuracy(model, test_x, test_y, device="cpu")


def run_demo(
    out: str | Path,
    *,
    n_cases: int = 12,
    n_dicom: int = 4,
    seed: int = 0,
    small: bool = False,
    progress: ProgressCallback | None = None,
    step: StepCallback | None = None,
) -> DemoResult:
    """Build a phantom archive under ``out``, protect it with the real archive job, evaluate.

    ``step(description)`` is called as each step starts (the CLI prints a line per step);
    ``small`` shrinks the protection evaluation to about half a minute on 2 CPU cores.
    """
    from medcrypt.cluster._config import JobConfig
    from medcrypt.cluster._demo_protection import run_demo_protection
    from medcrypt.cluster._job import run_job
    from medcrypt.medical import CLASS_NAMES
    from medcrypt.processing import EncryptionKey, PGDSettings, default_linf_cap

    def say(what: str) -> None:
        if step is not None:
            step(what)

    root = Path(out).expanduser().resolve()
    archive, dest, secrets = root / "archive", root / "protected", root / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    secrets.chmod(0o700)
    # a second demo run in the same folder reuses archive, model and key: the job then skips
    # every case (idempotent rerun)
    manifest = archive.parent / "manifest.csv"
    if not manifest.exists():
        say(f"writing a phantom archive of {n_cases} cases + 1 broken one")
        manifest = _write_archive(archive, n_cases, n_dicom, seed)
    else:
        if not (archive.parent / "labels.csv").exists():
            from medcrypt.errors import ConfigError

            raise ConfigError(
                f"{root} holds a demo archive from an older medcrypt (no labels.csv): remove "
                "it or give another --out",
                uri=str(root),
            )
        say(f"reusing the phantom archive in {archive}")
    model_path = secrets / "model.pt"
    key_path = secrets / "key.json"
    # the default mode, as `medcrypt keygen` makes it: error-minimizing noise against the
    # key's min-min surrogate (`medcrypt craft`), toward each case's own label, with keygen's
    # per-pixel cap
    if not key_path.exists():
        pgd = PGDSettings(mode="unlearnable", eps=1.0, linf_cap=default_linf_cap("unlearnable"))
        EncryptionKey.generate(CLASS_NAMES, combiner="none", seed=seed + 17, pgd=pgd).save(key_path)
        model_path.unlink(missing_ok=True)  # a surrogate belongs to one key
    pgd = EncryptionKey.load(key_path).pgd  # what the job releases, and the evaluation judges
    say(
        "crafting the key's surrogate (min-min, cnn width 8)"
        if not model_path.exists()
        else "reusing the key's surrogate"
    )
    acc = _craft(model_path, key_path, seed, progress, reuse=model_path.exists())
    config = JobConfig(
        source=str(archive),
        dest=str(dest),
        manifest=str(manifest),
        key=str(key_path),
        model=str(model_path),
        pgd=pgd,
        formats=("png", "nifti"),
        write_originals=True,  # so the demo's outputs can be compared side by side
        num_gpus=0,
        actor_cpus=1,
        min_actors=1,
        max_actors=1,
        batch_size=4,
    )
    say("running the archive job on local Ray")
    summary = run_job(config, progress=progress)
    psnrs, ssims = [], []
    for rec in sorted(dest.glob("*/record.json")):
        data = json.loads(rec.read_text(encoding="utf-8"))
        psnrs.append(data["metrics"]["psnr"])
        ssims.append(data["metrics"]["ssim"])
    say(f"evaluating the released mode ({pgd.mode}) on phantoms (Table 12 protocol)")
    reports = run_demo_protection(
        root / "protection", small=small, pgd=pgd, seed=seed, progress=progress
    )
    return DemoResult(
        summary=summary,
        archive=archive,
        dest=dest,
        manifest=manifest,
        labels=archive.parent / "labels.csv",
        key=key_path,
        model=model_path,
        mean_psnr=float(np.mean(psnrs)) if psnrs else float("nan"),
        mean_ssim=float(np.mean(ssims)) if ssims else float("nan"),
        base_accuracy=acc,
        protection=reports,
    )
