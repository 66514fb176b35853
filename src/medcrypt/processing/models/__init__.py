"""medcrypt.processing.models: the classifiers (ResNet-18 / PreAct / VGG-11 family,
width-scalable), their training, checkpoints and the device rule. Used by protection (the
crafting model) and assessment (victims).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcrypt._lazy import lazy_exports

if TYPE_CHECKING:
    from medcrypt.processing.models._checkpoint import (
        LoadedModel,
        load_checkpoint,
        save_checkpoint,
        state_dict_hash,
    )
    from medcrypt.processing.models._device import (
        resolve_device,
    )
    from medcrypt.processing.models._nets import (
        ARCHITECTURES,
        Classifier,
        Normalisation,
        build_model,
    )
    from medcrypt.processing.models._training import (
        BatchHook,
        EpochCallback,
        EpochRecord,
        TrainSettings,
        evaluate_accuracy,
        predict,
        train_model,
    )
else:  # each name is imported from its module on first use (medcrypt/_lazy.py)
    __getattr__, __dir__ = lazy_exports(__name__, __file__)

__all__ = [
    "ARCHITECTURES",
    "BatchHook",
    "Classifier",
    "EpochCallback",
    "EpochRecord",
    "LoadedModel",
    "Normalisation",
    "TrainSettings",
    "build_model",
    "evaluate_accuracy",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "save_checkpoint",
    "state_dict_hash",
    "train_model",
]
