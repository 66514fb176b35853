"""medcrypt.processing.assessment: the science that judges a release: the paper's Table-12 protocol
(evaluate_protection; evaluate_unlearnable for the default mode), victims and their scores,
counter-attacks, key recovery.
May use protection and models; neither of those uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcrypt._lazy import lazy_exports

if TYPE_CHECKING:
    from medcrypt.processing.assessment._audit import (
        CandidateScore,
        ClassRecovery,
        KeyRecoveryAudit,
        audit_key_recovery,
    )
    from medcrypt.processing.assessment._counter import (
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
        orthogonal_projection,
    )
    from medcrypt.processing.assessment._evaluation import (
        PAPER_TARGETS,
        EncryptedSplits,
        encrypt_splits,
        evaluate_protection,
        paper_key,
    )
    from medcrypt.processing.assessment._phantom import (
        PhantomSetup,
        phantom_protection_report,
        phantom_setup,
    )
    from medcrypt.processing.assessment._report import (
        ArchitectureResult,
        EpochScores,
        PerceptualSummary,
        ProtectionReport,
        ProtectionSettings,
    )
    from medcrypt.processing.assessment._unlearnable_eval import evaluate_unlearnable
    from medcrypt.processing.assessment._victims import (
        SetScores,
        VictimScores,
        balanced_accuracy,
        fit_victim,
        score_predictions,
        thief_settings,
        train_victim,
    )
else:  # each name is imported from its module on first use (medcrypt/_lazy.py)
    __getattr__, __dir__ = lazy_exports(__name__, __file__)

__all__ = [
    "DEFAULT_COUNTER_ATTACKS",
    "PAPER_TARGETS",
    "ArchitectureResult",
    "CandidateScore",
    "ClassRecovery",
    "CounterAttack",
    "CounterAttackAudit",
    "CounterAttackRow",
    "EncryptedSplits",
    "EpochScores",
    "KeyRecoveryAudit",
    "PerceptualSummary",
    "PhantomSetup",
    "ProtectionReport",
    "ProtectionSettings",
    "SetScores",
    "VictimScores",
    "adversarial_hook",
    "apply_counter_attack",
    "audit_counter_attacks",
    "audit_key_recovery",
    "balanced_accuracy",
    "down_up",
    "encrypt_splits",
    "evaluate_protection",
    "evaluate_unlearnable",
    "fit_victim",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg_round_trip",
    "mix_clean",
    "orthogonal_projection",
    "paper_key",
    "phantom_protection_report",
    "phantom_setup",
    "score_predictions",
    "thief_settings",
    "train_victim",
]
