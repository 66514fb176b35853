"""Classifiers written in the project (no torchvision): ResNet-18, PreAct-ResNet-18, VGG-11,
a plain five-layer CNN with batch norm (``cnn``, the small-network victim family) and
DenseNet-121 (``densenet121``, the family medical-imaging work trains most, e.g. CheXNet).

Every model is wrapped in :class:`Classifier`, which takes images in [0, 1] shaped
(B, C, H, W) and applies the input normalisation itself (stored as buffers), so PGD, training
and evaluation all work in pixel space and the budget eps means the same thing everywhere.
``width`` scales every layer (64 = the standard networks; tests use 8-16). Adaptive average
pooling before the linear head makes any input size work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from medcrypt.config import StrictModel
from medcrypt.errors import ModelError

__all__ = ["ARCHITECTURES", "Classifier", "Normalisation", "build_model"]

#: Architectures :func:`build_model` knows. ``resnet18`` is the paper's base model.
ARCHITECTURES: tuple[str, ...] = ("resnet18", "preact_resnet18", "vgg11", "cnn", "densenet121")


class Normalisation(StrictModel):
    """Per-channel input normalisation applied inside the model: ``(x - mean) / std``."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + skip


def _stages(
    block: Callable[[int, int, int], nn.Module], width: int, blocks: Sequence[int]
) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    cin = width
    for i, n in enumerate(blocks):
        cout = width * 2**i
        for j in range(n):
            layers.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    return nn.Sequential(*layers), cin


def _resnet18(num_classes: int, in_channels: int, width: int) -> nn.Module:
    # ImageNet-style stem (7x7 stride 2 + max pool), as torchvision's ResNet-18 the paper used.
    stages, feat = _stages(_BasicBlock, width, (2, 2, 2, 2))
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
        stages,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(feat, num_classes),
    )


def _preact_resnet18(num_classes: int, in_channels: int, width: int) -> nn.Module:
    # CIFAR-style stem (3x3 stride 1), He et al. 2016 "Identity mappings".
    stages, feat = _stages(_PreActBlock, width, (2, 2, 2, 2))
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
        stages,
        nn.BatchNorm2d(feat),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(feat, num_classes),
    )


def _vgg11(num_classes: int, in_channels: int, width: int) -> nn.Module:
    # VGG-11 ("A") with batch norm; 'M' = 2x2 max pool (ceil mode so tiny inputs survive).
    cfg: list[int | str] = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]
    layers: list[nn.Module] = []
    cin = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            assert isinstance(v, int)
            cout = width * v
            layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU(inplace=True))
            cin = cout
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(cin, cin),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(cin, num_classes),
    )


def _cnn(num_classes: int, in_channels: int, width: int) -> nn.Module:
    # five 3x3 conv + batch norm + ReLU layers, a 2x2 max pool after each of the first four
    # (ceil mode: tiny inputs survive), global average pooling, one linear layer
    layers: list[nn.Module] = []
    cin = in_channels
    for i, mult in enumerate((1, 2, 4, 8, 8)):
        cout = width * mult
        layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)]
        layers.append(nn.ReLU(inplace=True))
        if i < 4:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        cin = cout
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)
    )


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),  # bottleneck, bn_size 4
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def _densenet121(num_classes: int, in_channels: int, width: int) -> nn.Module:
    # Huang et al. 2017, DenseNet-BC-121: blocks of 6/12/24/16 layers, growth width/2 (32 at
    # the standard width 64), transitions halve channels and side; ImageNet stem.
    growth = max(1, width // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = width
    for i, count in enumerate((6, 12, 24, 16)):
        for _ in range(count):
            layers.append(_DenseLayer(cin, growth))
            cin += growth
        if i < 3:
            cout = cin // 2
            layers += [
                nn.BatchNorm2d(cin),
                nn.ReLU(inplace=True),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.AvgPool2d(2, 2, ceil_mode=True),
            ]
            cin = cout
    return nn.Sequential(
        *layers,
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(cin, num_classes),
    )


_BUILDERS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "resnet18": _resnet18,
    "preact_resnet18": _preact_resnet18,
    "vgg11": _vgg11,
    "cnn": _cnn,
    "densenet121": _densenet121,
}


class Classifier(nn.Module):
    """A classifier over images in [0, 1]; normalises its input with stored buffers.

    Attributes:
        arch, num_classes, in_channels, width: how it was built (see :func:`build_model`).
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self, body: nn.Module, *, arch: str, num_classes: int, in_channels: int, width: int
    ) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.width = width
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        self.body = body

    @property
    def normalisation(self) -> Normalisation:
        """The input normalisation currently applied by :meth:`forward`."""
        return Normalisation(
            mean=tuple(float(v) for v in self.input_mean.tolist()),
            std=tuple(float(v) for v in self.input_std.tolist()),
        )

    def set_normalisation(self, normalisation: Normalisation) -> None:
        """Set the per-channel ``(x - mean) / std`` applied to every input."""
        c = self.in_channels
        if len(normalisation.mean) not in (1, c) or len(normalisation.std) not in (1, c):
            raise ModelError(
                f"normalisation must give 1 or {c} values per field, got "
                f"mean={normalisation.mean} std={normalisation.std}"
            )
        if min(normalisation.std) <= 0:
            raise ModelError(f"normalisation std must be positive, got {normalisation.std}")
        with torch.no_grad():
            self.input_mean.copy_(torch.tensor(normalisation.mean).expand(c))
            self.input_std.copy_(torch.tensor(normalisation.std).expand(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.input_mean.view(1, -1, 1, 1).to(x.dtype)
        std = self.input_std.view(1, -1, 1, 1).to(x.dtype)
        out: torch.Tensor = self.body((x - mean) / std)
        return out


def build_model(
    arch: str, num_classes: int, *, in_channels: int = 1, width: int = 64, seed: int = 0
) -> Classifier:
    """Build a freshly initialised classifier.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: number of output logits (>= 2).
        in_channels: input channels (1 for greyscale slices).
        width: channels of the first stage (64 = the standard network).
        seed: seeds the weight initialisation (the global RNG is left untouched).

    Raises:
        ModelError: unknown architecture or invalid sizes.
    """
    if arch not in _BUILDERS:
        raise ModelError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    if num_classes < 2 or in_channels < 1 or width < 1:
        raise ModelError(
            f"expected num_classes >= 2, in_channels >= 1, width >= 1; got "
            f"num_classes={num_classes}, in_channels={in_channels}, width={width}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body = _BUILDERS[arch](num_classes, in_channels, width)
    return Classifier(
        body, arch=arch, num_classes=num_classes, in_channels=in_channels, width=width
    )
