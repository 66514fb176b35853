"""The protection report on synthetic tumour phantoms, end to end (the demo's and tests' data).

:func:`phantom_setup` builds the phantom splits and the data owner's base model once;
:func:`phantom_protection_report` keys it and runs :func:`evaluate_protection` on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from medcrypt._types import ProgressCallback
from medcrypt.processing.assessment._evaluation import evaluate_protection, paper_key
from medcrypt.processing.assessment._report import ProtectionReport, ProtectionSettings
from medcrypt.processing.models._device import resolve_device
from medcrypt.processing.models._nets import build_model
from medcrypt.processing.models._training import train_model
from medcrypt.processing.protection._keys import EncryptionKey
from medcrypt.processing.protection._settings import PGDSettings

__all__ = ["PhantomSetup", "phantom_protection_report", "phantom_setup"]


@dataclass(frozen=True)
class PhantomSetup:
    """Phantom splits and the data owner's base model, trained on the clean training split.

    What :func:`phantom_protection_report` evaluates; built once by :func:`phantom_setup` so
    that several keys or budgets can be evaluated against the same base model.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    base: nn.Module
    dataset: str


def phantom_setup(
    *,
    n_per_class: int = 120,
    n_test_per_class: int = 40,
    size: int = 64,
    seed: int = 0,
    settings: ProtectionSettings | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> PhantomSetup:
    """Disjoint training and test phantoms (seeds ``seed`` and ``seed + 1``) and a base model.

    The base model (the first of ``settings.archs``, ``settings.base_model_width`` wide) is
    trained on the clean training split for ``settings.base_train``. It is initialised and
    shuffled with ``settings.seed + 1``, so no evaluated model shares its initial weights
    (an attacker does not have them either).
    """
    from medcrypt.medical import CLASS_NAMES, make_phantom_slices

    cfg = settings or ProtectionSettings()
    x_train, y_train = make_phantom_slices(n_per_class, size=size, seed=seed)
    x_test, y_test = make_phantom_slices(n_test_per_class, size=size, seed=seed + 1)
    base_arch = cfg.archs[0]
    base_seed = cfg.seed + 1
    base = build_model(base_arch, len(CLASS_NAMES), width=cfg.base_model_width, seed=base_seed)
    epochs = cfg.base_train.epochs

    def base_progress(done: int, _total: int | None, what: str) -> None:
        if progress is not None:
            progress(done, epochs, f"base {base_arch} {what}")

    train_model(
        base,
        x_train,
        y_train,
        seed=base_seed,
        settings=cfg.base_train,
        device=resolve_device(device),
        progress=base_progress,
    )
    return PhantomSetup(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        base=base,
        dataset=f"phantom slices {size}x{size}, seed {seed}",
    )


def phantom_protection_report(
    *,
    n_per_class: int = 120,
    n_test_per_class: int = 40,
    size: int = 64,
    seed: int = 0,
    settings: ProtectionSettings | None = None,
    pgd: PGDSettings | None = None,
    key: EncryptionKey | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    setup: PhantomSetup | None = None,
) -> ProtectionReport:
    """The protection report on synthetic tumour phantoms (5 classes), end to end.

    Builds the phantoms and trains the base model with :func:`phantom_setup` (unless
    ``setup`` gives them; ``n_per_class``, ``n_test_per_class`` and ``size`` are then unused),
    keys it with :func:`paper_key` (unless ``key`` is given) and runs
    :func:`evaluate_protection`.
    """
    from medcrypt.medical import CLASS_NAMES

    cfg = settings or ProtectionSettings()
    pgd_cfg = pgd or (key.pgd if key is not None else PGDSettings())
    if setup is None:
        setup = phantom_setup(
            n_per_class=n_per_class,
            n_test_per_class=n_test_per_class,
            size=size,
            seed=seed,
            settings=cfg,
            device=device,
            progress=progress,
        )
    the_key = key or paper_key(CLASS_NAMES, seed=seed, pgd=pgd_cfg)
    return evaluate_protection(
        setup.base,
        the_key,
        setup.x_train,
        setup.y_train,
        setup.x_test,
        setup.y_test,
        settings=cfg,
        pgd=pgd_cfg,
        device=device,
        dataset=setup.dataset,
        progress=progress,
    )
