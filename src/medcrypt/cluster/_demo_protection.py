"""The demo's protection evaluation: the mode the demo released, judged on phantoms.

The demo's archive job releases the default mode, ``unlearnable``; this evaluates that same
mode with the Table-12 protocol (:func:`medcrypt.processing.assessment.evaluate_unlearnable`:
surrogate crafted on a sample of the training phantoms, every slice released on its own,
victims trained on the release) at the demo's budget, and without ``small`` at half of it
too, so the protection page can draw a frontier. The figures are real measurements at toy
scale (few, small phantoms; narrow models; few epochs): they show the protocol, not
medcrypt's protection on real data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medcrypt._types import ProgressCallback

if TYPE_CHECKING:
    from medcrypt.processing import PGDSettings

__all__ = ["run_demo_protection"]


def run_demo_protection(
    out: Path,
    *,
    small: bool,
    pgd: PGDSettings,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> tuple[Path, ...]:
    """Write ``out/eps-<eps>/protection_report.(json|md)`` per budget; return the JSON paths.

    Args:
        pgd: the settings the demo released with (its mode, budget and per-pixel cap); the
            evaluation runs them at ``pgd.eps`` (and at half of it unless ``small``).
    """
    from medcrypt.medical import CLASS_NAMES, make_phantom_slices
    from medcrypt.processing import MinMinSettings, TrainSettings
    from medcrypt.processing.assessment import ProtectionSettings, evaluate_unlearnable

    if small:
        size, n_train, n_test, epochs = 32, 30, 10, 6
    else:
        size, n_train, n_test, epochs = 40, 48, 16, 10
    settings = ProtectionSettings(
        archs=("resnet18", "vgg11"),
        width=8,
        train=TrainSettings(epochs=epochs, batch_size=32, lr=3e-3),
        seed=seed,
    )
    x_train, y_train = make_phantom_slices(n_train, size=size, seed=seed)
    x_test, y_test = make_phantom_slices(n_test, size=size, seed=seed + 1)
    paths = []
    # --small: the released budget only (each budget crafts its own surrogate: two would
    # double the demo's protection step); the full demo adds half of it, for a frontier
    for eps in (pgd.eps,) if small else (pgd.eps / 2, pgd.eps):
        # a fresh validation keeps the mode's own step default (2.5 * eps / iters)
        fields = pgd.model_dump(exclude={"step"}) | {"eps": eps}
        report = evaluate_unlearnable(
            x_train,
            y_train,
            x_test,
            y_test,
            class_names=tuple(CLASS_NAMES),
            pgd=type(pgd).model_validate(fields),
            settings=settings,
            minmin=MinMinSettings(width=8, max_rounds=8),
            sample=0.5,
            device="cpu",
            dataset=f"phantom slices {size}x{size}, seed {seed}",
            progress=progress,
        )
        folder = out / f"eps-{eps:g}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "protection_report.json"
        path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (folder / "protection_report.md").write_text(report.to_markdown(), encoding="utf-8")
        paths.append(path)
    return tuple(paths)
