"""Settings of the targeted PGD (paper Eq. 1) and its protection modes, shared by keys, the
Encryptor and the CLI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from medcrypt.config import StrictModel

__all__ = [
    "MODES",
    "NORMS",
    "UNLEARNABLE_LINF_CAP",
    "PGDSettings",
    "ProtectionMode",
    "default_linf_cap",
]

ProtectionMode = Literal["paper", "poison", "shortcut", "shortcut+poison", "unlearnable"]
#: the protection modes, in the order the CLI lists them
MODES: tuple[str, ...] = ("paper", "poison", "shortcut", "shortcut+poison", "unlearnable")
NORMS: tuple[str, ...] = ("l2", "linf")

#: restarts / augment a poison mode gets when the settings do not name them (TAP crafts with
#: differentiable augmentation on and several restarts; 8 in its repository, 4 here for CPU)
_POISON_DEFAULTS: dict[str, Any] = {"restarts": 4, "augment": 1.0}
#: what mode unlearnable gets when not named: error-minimizing noise needs no restarts (it
#: starts from the clean image, which is already near its own label), and EOT augmentation;
#: its step, unless named, is 2.5 * eps / iters
_UNLEARNABLE_DEFAULTS: dict[str, Any] = {"restarts": 1, "augment": 1.0, "iters": 20}
#: the per-pixel cap ``keygen`` gives a new mode unlearnable key unless told otherwise (in
#: [0, 1] pixel units; chosen from its measured cost to protection, README "Per-pixel cap").
#: Not a PGDSettings default: a key file without the field keeps meaning "no cap", so older
#: keys keep their fingerprint and their outputs.
UNLEARNABLE_LINF_CAP = 8.0 / 255.0


def default_linf_cap(mode: str) -> float | None:
    """The cap a new key of ``mode`` gets unless told otherwise: :data:`UNLEARNABLE_LINF_CAP`
    for the default mode (measured), none for the others (``paper`` reproduces the paper's
    plain L2 PGD bit for bit; the cap was not measured for the poison and shortcut modes)."""
    return UNLEARNABLE_LINF_CAP if mode == "unlearnable" else None


class PGDSettings(StrictModel):
    """Targeted projected gradient descent, defaults from the paper's brain-MRI run (Sec. 5).

    Attributes:
        eps: radius of the perturbation budget in [0, 1] pixel units: the L2 norm over the
            whole slice (``norm="l2"``) or the largest change of any pixel (``"linf"``).
        step: length of every gradient step: L2 length of the normalised step, or the
            per-pixel sign step for ``linf``.
        iters: number of gradient steps (per restart).
        best_iterate: return, per sample, the iterate with the lowest target loss (as the
            paper's code does) instead of the last one.
        precision: ``"auto"`` uses bf16 autocast on CUDA devices that support it and on
            CPUs with native bf16 arithmetic (Intel AMX / AVX512-BF16), fp32 elsewhere;
            ``"fp32"`` / ``"bf16"`` force one (bf16 on a CPU without those instructions
            is emulated, and slower than fp32). Records say which one ran.
        channels_last: NHWC memory format for model and inputs; ``None`` = on (CPU and
            CUDA alike: on CPU it measured 1.1-1.4x faster forward/input-gradient passes,
            see ``benchmarks/pgd_breakdown.py``); ``False`` forces the contiguous layout.
        mode: ``paper`` (the paper's plain targeted L2 PGD, for reproduction), ``poison``
            (TAP-style crafting: differentiable augmentation, restarts, optional Linf and
            model ensemble), ``shortcut`` (keyed class-wise synthetic noise, no model) or
            ``shortcut+poison`` (both inside one budget: the shortcut gets ``shortcut_share``
            of eps, the crafted part the rest), or ``unlearnable`` (error-minimizing noise,
            Huang et al. 2021: every image pushed *toward its own label* against a surrogate
            crafted by the min-min loop, see ``_unlearnable``; the key maps each class to
            itself).
        norm: ``l2`` or ``linf`` budget (``paper`` is L2 only).
        foreground: spend the budget on the anatomy only (a mask from the image itself, or
            the case's brain mask); background pixels are released unchanged.
        restarts: poison crafting runs from this many starts (the first from the clean
            image, the rest random in the ball) and keeps the lowest-loss result per row.
        augment: strength in [0, 1] of the differentiable augmentation during poison
            crafting (shifts up to 1/16 of the side, rotations up to 10 degrees, scalings
            and intensity scalings up to 10%, all times the strength); 0 = off.
        shortcut_patch: side in pixels of the constant patches of the shortcut pattern.
        shortcut_share: the shortcut's share of the budget in ``shortcut+poison``: of eps^2
            under L2 (the shortcut gets ``sqrt(share) * eps``, the crafted part
            ``sqrt(1 - share) * eps``; about orthogonal, together about eps), of eps under
            Linf. The total is projected back onto the eps-ball either way.
        linf_cap: largest change of any single pixel, in [0, 1] pixel units, held *together
            with* the eps budget in every mode (each projection clamps every pixel to the
            cap first, then scales onto the eps-ball, which shrinks every pixel and so keeps
            the cap); ``None`` = no cap. Left out of every dump when ``None``, so keys and
            records from before the field existed keep their bytes and fingerprints.
    """

    eps: float = Field(default=2.0, gt=0.0)
    step: float = Field(default=0.1, gt=0.0)
    iters: int = Field(default=100, ge=0)
    best_iterate: bool = True
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool | None = None
    mode: ProtectionMode = Field(
        default="paper",
        description="protection mode: paper (plain PGD), poison (augmented, restarts), "
        "shortcut (keyed synthetic noise, no model), shortcut+poison, or unlearnable "
        "(error-minimizing noise against a min-min surrogate)",
    )
    norm: Literal["l2", "linf"] = Field(
        default="l2", description="budget norm: l2 or linf (paper mode: l2 only)"
    )
    foreground: bool = Field(
        default=True,
        description="confine the perturbation to the anatomy (background released unchanged)",
    )
    restarts: int = Field(
        default=1, ge=1, description="poison crafting restarts, lowest loss kept [poison: 4]"
    )
    augment: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="differentiable augmentation strength during crafting, 0-1 [poison: 1]",
    )
    shortcut_patch: int = Field(
        default=8, ge=1, description="side in pixels of the shortcut pattern's patches"
    )
    shortcut_share: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="shortcut's share of the budget in shortcut+poison (of eps^2 for l2, of eps "
        "for linf)",
    )

    linf_cap: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="per-pixel cap in [0, 1] pixel units, held together with eps (none: no cap)",
    )

    @model_serializer(mode="wrap")
    def _omit_unset_cap(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if self.linf_cap is None and isinstance(data, dict):
            data.pop("linf_cap", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _mode_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode") in ("poison", "shortcut+poison"):
            data = {**{k: v for k, v in _POISON_DEFAULTS.items() if k not in data}, **data}
        if isinstance(data, dict) and data.get("mode") == "unlearnable":
            data = {**{k: v for k, v in _UNLEARNABLE_DEFAULTS.items() if k not in data}, **data}
            if "step" not in data:  # 20 steps that can cross the ball 2.5 times
                eps = float(data.get("eps", cls.model_fields["eps"].default))
                data["step"] = 2.5 * eps / max(int(data["iters"]), 1)
        return data

    @model_validator(mode="after")
    def _check_mode(self) -> PGDSettings:
        if self.mode == "paper" and (
            self.norm != "l2" or self.restarts != 1 or self.augment != 0.0
        ):
            raise ValueError(
                "mode 'paper' is the paper's plain L2 PGD (norm l2, restarts 1, augment 0); "
                "use mode 'poison' for Linf, restarts or augmentation"
            )
        return self

    @property
    def crafted(self) -> bool:
        """Whether this mode runs PGD against a model (all but ``shortcut``)."""
        return self.mode != "shortcut"
