"""medcrypt.processing: classifiers, training, targeted PGD and the protection modes (paper,
poison, shortcut; foreground budget), combiners, keys.

Pure torch (never ray/boto3). See docs/internals.md for the contract other packages use.
"""

from __future__ import annotations

from medcrypt.processing._audit import (
    CandidateScore,
    ClassRecovery,
    KeyRecoveryAudit,
    audit_key_recovery,
)
from medcrypt.processing._augment import AugmentDraw, augment, draw_augmentation
from medcrypt.processing._checkpoint import (
    LoadedModel,
    load_checkpoint,
    save_checkpoint,
    state_dict_hash,
)
from medcrypt.processing._combiners import COMBINERS, combine, random_params, validate_combiner
from medcrypt.processing._counter import (
    DEFAULT_COUNTER_ATTACKS,
    CounterAttack,
    CounterAttackAudit,
    CounterAttackRow,
    adversarial_hook,
    apply_counter_attack,
    audit_counter_attacks,
    down_up,
    gaussian_blur,
    gaussian_noise,
    jpeg_round_trip,
    mix_clean,
)
from medcrypt.processing._encrypt import EncryptionResult, Encryptor
from medcrypt.processing._evaluation import (
    ArchitectureResult,
    EncryptedSplits,
    EpochScores,
    PerceptualSummary,
    ProtectionReport,
    ProtectionSettings,
    encrypt_splits,
    evaluate_protection,
    paper_key,
    phantom_protection_report,
)
from medcrypt.processing._foreground import (
    apply_budget,
    foreground_mask,
    foreground_masks,
    project,
)
from medcrypt.processing._keys import EncryptionKey
from medcrypt.processing._metrics import (
    image_metrics,
    l2,
    linf,
    psnr,
    ssim,
    targeted_success_rate,
)
from medcrypt.processing._models import ARCHITECTURES, Classifier, Normalisation, build_model
from medcrypt.processing._pgd import (
    PGDOutput,
    compute_summary,
    cpu_has_native_bf16,
    enforce_budget,
    prepare_for_pgd,
    project_l2,
    targeted_pgd_l2,
)
from medcrypt.processing._poison import craft_poison
from medcrypt.processing._quantise import dequantise, quantise
from medcrypt.processing._release import (
    PROTECTION_PGD_FIELDS,
    RELEASABLE_KEY_FIELDS,
    SECRET_KEY_FIELDS,
    ReleaseError,
    check_release,
    key_release,
    release_json,
    settings_from_key,
)
from medcrypt.processing._settings import (
    MODES,
    NORMS,
    PGDSettings,
    ProtectionMode,
    resolve_device,
)
from medcrypt.processing._shortcut import shortcut_delta, shortcut_pattern
from medcrypt.processing._training import (
    BatchHook,
    EpochCallback,
    EpochRecord,
    TrainSettings,
    evaluate_accuracy,
    predict,
    train_model,
)
from medcrypt.processing._victims import (
    SetScores,
    VictimScores,
    balanced_accuracy,
    fit_victim,
    score_predictions,
    train_victim,
)

__all__ = [
    "ARCHITECTURES",
    "COMBINERS",
    "Classifier",
    "EncryptionKey",
    "EncryptionResult",
    "Encryptor",
    "EpochCallback",
    "EpochRecord",
    "LoadedModel",
    "Normalisation",
    "PGDOutput",
    "PGDSettings",
    "TrainSettings",
    "build_model",
    "combine",
    "compute_summary",
    "cpu_has_native_bf16",
    "dequantise",
    "enforce_budget",
    "evaluate_accuracy",
    "image_metrics",
    "l2",
    "linf",
    "load_checkpoint",
    "predict",
    "prepare_for_pgd",
    "project_l2",
    "psnr",
    "quantise",
    "random_params",
    "resolve_device",
    "save_checkpoint",
    "ssim",
    "state_dict_hash",
    "targeted_pgd_l2",
    "targeted_success_rate",
    "train_model",
    "validate_combiner",
]

__all__ += [
    "PROTECTION_PGD_FIELDS",
    "RELEASABLE_KEY_FIELDS",
    "SECRET_KEY_FIELDS",
    "ArchitectureResult",
    "CandidateScore",
    "ClassRecovery",
    "EncryptedSplits",
    "EpochScores",
    "KeyRecoveryAudit",
    "PerceptualSummary",
    "ProtectionReport",
    "ProtectionSettings",
    "ReleaseError",
    "audit_key_recovery",
    "check_release",
    "encrypt_splits",
    "evaluate_protection",
    "key_release",
    "paper_key",
    "phantom_protection_report",
    "release_json",
    "settings_from_key",
]

__all__ += [
    "MODES",
    "NORMS",
    "AugmentDraw",
    "ProtectionMode",
    "apply_budget",
    "augment",
    "craft_poison",
    "draw_augmentation",
    "foreground_mask",
    "foreground_masks",
    "project",
    "shortcut_delta",
    "shortcut_pattern",
]

__all__ += [
    "DEFAULT_COUNTER_ATTACKS",
    "BatchHook",
    "CounterAttack",
    "CounterAttackAudit",
    "CounterAttackRow",
    "SetScores",
    "VictimScores",
    "adversarial_hook",
    "apply_counter_attack",
    "audit_counter_attacks",
    "balanced_accuracy",
    "down_up",
    "fit_victim",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg_round_trip",
    "mix_clean",
    "score_predictions",
    "train_victim",
]
