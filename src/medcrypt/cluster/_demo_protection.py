"""The demo's protection evaluation: the paper's Table 12 protocol on phantoms, at small scale.

Several budgets against one base model (trained once), so the protection page can draw a
frontier. The figures are real measurements at toy scale (few, small phantoms; narrow
models; few epochs): they show the protocol, not medcrypt's protection on real data.
"""

from __future__ import annotations

from pathlib import Path

from medcrypt._types import ProgressCallback

__all__ = ["run_demo_protection"]


def run_demo_protection(
    out: Path, *, small: bool, seed: int = 0, progress: ProgressCallback | None = None
) -> tuple[Path, ...]:
    """Write ``out/eps-<eps>/protection_report.(json|md)`` per budget; return the JSON paths."""
    from medcrypt.processing import PGDSettings, TrainSettings
    from medcrypt.processing.assessment import (
        ProtectionSettings,
        phantom_protection_report,
        phantom_setup,
    )

    budgets: tuple[float, ...]
    if small:
        size, n_train, n_test, epochs, iters, budgets = 32, 30, 10, 6, 10, (0.5, 1.0)
    else:
        size, n_train, n_test, epochs, iters, budgets = 40, 48, 16, 10, 20, (0.5, 1.0, 2.0)
    settings = ProtectionSettings(
        archs=("resnet18", "vgg11"),
        width=8,
        train=TrainSettings(epochs=epochs, batch_size=32, lr=3e-3),
        seed=seed,
    )
    setup = phantom_setup(
        n_per_class=n_train,
        n_test_per_class=n_test,
        size=size,
        seed=seed,
        settings=settings,
        device="cpu",
        progress=progress,
    )
    paths = []
    for eps in budgets:
        report = phantom_protection_report(
            settings=settings,
            pgd=PGDSettings(eps=eps, step=0.1, iters=iters),
            device="cpu",
            progress=progress,
            setup=setup,
        )
        folder = out / f"eps-{eps:g}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "protection_report.json"
        path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (folder / "protection_report.md").write_text(report.to_markdown(), encoding="utf-8")
        paths.append(path)
    return tuple(paths)
