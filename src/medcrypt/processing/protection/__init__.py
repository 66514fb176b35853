"""medcrypt.processing.protection: everything that makes a release: the key, the PGD
settings and modes (paper, poison, shortcut, shortcut+poison), targeted PGD, the combiners,
the foreground budget, EOT augmentation, quantisation, image metrics, and what a record
may say about the key. May use models; never assessment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcrypt._lazy import lazy_exports

if TYPE_CHECKING:
    from medcrypt.processing.protection._augment import (
        AugmentDraw,
        augment,
        draw_augmentation,
    )
    from medcrypt.processing.protection._combiners import (
        COMBINERS,
        combine,
        random_params,
        validate_combiner,
    )
    from medcrypt.processing.protection._encrypt import (
        EncryptionResult,
        Encryptor,
    )
    from medcrypt.processing.protection._foreground import (
        apply_budget,
        foreground_mask,
        foreground_masks,
        project,
    )
    from medcrypt.processing.protection._keys import (
        EncryptionKey,
    )
    from medcrypt.processing.protection._metrics import (
        image_metrics,
        l2,
        linf,
        psnr,
        ssim,
        targeted_success_rate,
    )
    from medcrypt.processing.protection._pgd import (
        PGDOutput,
        compute_summary,
        cpu_has_native_bf16,
        enforce_budget,
        prepare_for_pgd,
        project_l2,
        targeted_pgd_l2,
    )
    from medcrypt.processing.protection._poison import (
        craft_poison,
    )
    from medcrypt.processing.protection._quantise import (
        dequantise,
        quantise,
    )
    from medcrypt.processing.protection._release import (
        PROTECTION_PGD_FIELDS,
        RELEASABLE_KEY_FIELDS,
        SECRET_KEY_FIELDS,
        ReleaseError,
        check_release,
        key_release,
        release_json,
        settings_from_key,
    )
    from medcrypt.processing.protection._settings import (
        MODES,
        NORMS,
        UNLEARNABLE_LINF_CAP,
        PGDSettings,
        ProtectionMode,
        default_linf_cap,
    )
    from medcrypt.processing.protection._shortcut import (
        shortcut_delta,
        shortcut_pattern,
    )
    from medcrypt.processing.protection._unlearnable import (
        MinMinResult,
        MinMinSettings,
        craft_surrogate,
        crafting_sample,
        error_minimizing,
    )
else:  # each name is imported from its module on first use (medcrypt/_lazy.py)
    __getattr__, __dir__ = lazy_exports(__name__, __file__)

__all__ = [
    "COMBINERS",
    "MODES",
    "NORMS",
    "PROTECTION_PGD_FIELDS",
    "RELEASABLE_KEY_FIELDS",
    "SECRET_KEY_FIELDS",
    "UNLEARNABLE_LINF_CAP",
    "AugmentDraw",
    "EncryptionKey",
    "EncryptionResult",
    "Encryptor",
    "MinMinResult",
    "MinMinSettings",
    "PGDOutput",
    "PGDSettings",
    "ProtectionMode",
    "ReleaseError",
    "apply_budget",
    "augment",
    "check_release",
    "combine",
    "compute_summary",
    "cpu_has_native_bf16",
    "craft_poison",
    "craft_surrogate",
    "crafting_sample",
    "default_linf_cap",
    "dequantise",
    "draw_augmentation",
    "enforce_budget",
    "error_minimizing",
    "foreground_mask",
    "foreground_masks",
    "image_metrics",
    "key_release",
    "l2",
    "linf",
    "prepare_for_pgd",
    "project",
    "project_l2",
    "psnr",
    "quantise",
    "random_params",
    "release_json",
    "settings_from_key",
    "shortcut_delta",
    "shortcut_pattern",
    "ssim",
    "targeted_pgd_l2",
    "targeted_success_rate",
    "validate_combiner",
]
