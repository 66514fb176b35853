"""Synthetic brain-tumour phantoms: 2D axial slices and 3D cases with masks (pure numpy).

The phantoms stand in for real MRI in tests and the demo. Each case is drawn from a small
generative model of a T1 post-contrast head:

* an ellipsoidal head (scalp ring, dark skull, brain) whose size, position and tilt vary per
  case; smooth grey/white texture; lateral ventricles in the upper half, a brainstem in the
  lower half; a smooth multiplicative bias field and Rician-like noise;
* one tumour whose *typical site and appearance* depend on the class:

  ======================  =====================================  ===========================
  class                   site                                   appearance
  ======================  =====================================  ===========================
  meningioma              convexity, extra-axial (on the skull)  round, bright, bright rim
  chordoma                midline clivus, low                    lobulated, dark, mottled
  schwannoma              cerebellopontine angle, one side       round, bright, small cysts
  pituitary_adenoma       sella, midline, small                  homogeneous, mildly bright
  craniopharyngioma       suprasellar, midline                   dark cyst, calcified rim
  ======================  =====================================  ===========================

  Size, position, intensity and lobulation vary per case, and a minority of cases sit at an
  *atypical* site borrowed from a neighbouring class (a CPA meningioma, a sellar
  craniopharyngioma, ...), as in real practice, so the classes are learnable but not
  separable from one pixel.

Geometry is in millimetres: the in-plane field of view is 64 mm (1 mm pixels at 64 px) and
volume slices are 2 mm apart, so a 2D slice is the same picture as the volume's slice through
the tumour centre. Displayed 2D arrays follow the radiological convention: row 0 is anterior,
column 0 is the patient's right. Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_NAMES", "make_phantom_slices", "make_phantom_volume"]

logger = logging.getLogger(__name__)

#: The five tumour classes of the paper's brain MRI experiment, in label order.
CLASS_NAMES: tuple[str, ...] = (
    "meningioma",
    "chordoma",
    "schwannoma",
    "pituitary_adenoma",
    "craniopharyngioma",
)

_FOV_MM = 64.0  # in-plane field of view (both axes)
_SLICE_MM = 2.0  # volume slice spacing
_ATYPICAL_P = 0.15  # share of cases at a site borrowed from another class

# BraTS-like sub-region labels used in the volume masks.
_NECROTIC_OR_CYST = 1
_EDEMA = 2
_NON_ENHANCING = 3
_ENHANCING = 4

# Class sites in head-relative coordinates: x lateral (+ = image right), y antero-posterior
# (- = anterior, top of the image), both as a fraction of the head semi-axes; z as a fraction
# of the head's vertical semi-axis (- = inferior).
_SITES: dict[str, tuple[float, float, float]] = {
    "sella": (0.0, -0.28, -0.30),
    "suprasellar": (0.0, -0.20, -0.14),
    "clivus": (0.0, -0.02, -0.42),
    "cpa": (0.38, 0.30, -0.32),
    "parasellar": (0.22, -0.22, -0.26),
}
_TYPICAL_SITE = ("convexity", "clivus", "cpa", "sella", "suprasellar")
_ATYPICAL_SITES: tuple[tuple[str, ...], ...] = (
    ("cpa", "parasellar"),  # meningioma at the skull base
    ("cpa", "sella"),  # chordoma extending laterally or up into the sella
    ("parasellar", "clivus"),  # trigeminal schwannoma near the clivus
    ("suprasellar", "parasellar"),  # adenoma with suprasellar / cavernous extension
    ("sella", "clivus"),  # intrasellar / low craniopharyngioma
)
# Tumour radius range (mm) per class.
_RADIUS_MM: tuple[tuple[float, float], ...] = (
    (5.0, 9.0),
    (4.0, 7.5),
    (3.5, 6.5),
    (2.2, 4.0),
    (4.0, 7.5),
)


@dataclass(frozen=True)
class _Head:
    cx: float
    cy: float
    a: float  # lateral semi-axis (mm)
    b: float  # antero-posterior semi-axis (mm)
    c: float  # vertical semi-axis (mm)
    tilt: float  # in-plane rotation (rad)
    scalp: float  # scalp thickness (mm)
    skull: float  # skull thickness (mm)
    brain_level: float
    scalp_level: float
    texture: np.ndarray  # (K, 5): kx, ky, kz, phase, amplitude
    ventricle_dx: float
    ventricle_size: float
    bias: np.ndarray  # (6,) coefficients of a smooth multiplicative field
    noise: float


@dataclass(frozen=True)
class _Tumour:
    label: int
    x: float
    y: float
    z: float
    r: float
    rz: float
    lobes: np.ndarray  # (3, 2): amplitude, phase for angular orders 2..4
    level: float
    rim_level: float
    rim: float  # rim thickness as a fraction of the radius
    core_level: float
    texture: np.ndarray  # (K, 5) fine texture for heterogeneous tumours
    texture_gain: float
    edema: float  # edema halo width as a fraction of the radius (0 = none)


def _draw_head(rng: np.random.Generator, z_fov: float) -> _Head:
    k = 6
    texture = np.column_stack(
        [
            rng.normal(0.0, 0.12, k),
            rng.normal(0.0, 0.12, k),
            rng.normal(0.0, 0.06, k),
            rng.uniform(0.0, 2 * np.pi, k),
            rng.uniform(0.01, 0.03, k),
        ]
    )
    return _Head(
        cx=float(rng.normal(0.0, 1.0)),
        cy=float(rng.normal(0.5, 1.0)),
        a=float(rng.uniform(22.0, 26.0)),
        b=float(rng.uniform(26.0, 29.5)),
        c=float(0.47 * z_fov * rng.uniform(0.95, 1.05)),
        tilt=float(rng.normal(0.0, 0.08)),
        scalp=float(rng.uniform(1.8, 2.8)),
        skull=float(rng.uniform(1.5, 2.5)),
        brain_level=float(rng.uniform(0.40, 0.50)),
        scalp_level=float(rng.uniform(0.70, 0.85)),
        texture=texture,
        ventricle_dx=float(rng.uniform(3.0, 5.0)),
        ventricle_size=float(rng.uniform(0.8, 1.25)),
        bias=rng.normal(0.0, [0.05, 0.05, 0.04, 0.03, 0.03, 0.03]),
        noise=float(rng.uniform(0.015, 0.035)),
    )


def _site_xyz(
    site: str, head: _Head, r: float, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Tumour centre (mm, head frame before tilt) for a named site, with jitter."""
    inner_a = head.a - head.scalp - head.skull
    inner_b = head.b - head.scalp - head.skull
    if site == "convexity":
        theta = rng.uniform(0.0, 2 * np.pi)
        z = head.c * rng.uniform(0.05, 0.45)
        shrink = np.sqrt(max(1.0 - (z / head.c) ** 2, 0.2))
        # Centre just inside the inner table so the tumour abuts the skull (extra-axial).
        x = (inner_a * shrink - r * 1.02) * np.cos(theta)
        y = (inner_b * shrink - r * 1.02) * np.sin(theta)
        return float(x), float(y), float(z)
    fx, fy, fz = _SITES[site]
    side = 1.0 if rng.random() < 0.5 else -1.0
    x = fx * inner_a * (side if fx else 1.0) + rng.normal(0.0, 1.2)
    y = fy * inner_b + rng.normal(0.0, 1.5)
    z = fz * head.c + rng.normal(0.0, 1.5)
    return float(x), float(y), float(z)


def _draw_tumour(label: int, head: _Head, rng: np.random.Generator) -> _Tumour:
    lo, hi = _RADIUS_MM[label]
    r = float(rng.uniform(lo, hi))
    if rng.random() < _ATYPICAL_P:
        options = _ATYPICAL_SITES[label]
        site = options[int(rng.integers(len(options)))]
    else:
        site = _TYPICAL_SITE[label]
    x, y, z = _site_xyz(site, head, r, rng)
    lobes = np.column_stack([rng.uniform(0.0, 0.06, 3), rng.uniform(0.0, 2 * np.pi, 3)])
    texture = np.column_stack(
        [
            rng.normal(0.0, 0.55, 8),
            rng.normal(0.0, 0.55, 8),
            rng.normal(0.0, 0.3, 8),
            rng.uniform(0.0, 2 * np.pi, 8),
            rng.uniform(0.5, 1.0, 8),
        ]
    )
    name = CLASS_NAMES[label]
    brain = head.brain_level
    u = rng.uniform
    if name == "meningioma":
        level, rim_level, rim, core, gain, edema = (
            brain + u(0.16, 0.30), brain + u(0.28, 0.42), u(0.15, 0.25), brain + u(0.16, 0.30),
            0.02, u(0.0, 0.35),
        )  # fmt: skip
    elif name == "chordoma":
        lobes[:, 0] = rng.uniform(0.08, 0.18, 3)
        level, rim_level, rim, core, gain, edema = (
            brain - u(0.06, 0.18), brain - u(0.0, 0.10), u(0.1, 0.2), brain - u(0.06, 0.18),
            u(0.06, 0.10), 0.0,
        )  # fmt: skip
    elif name == "schwannoma":
        level, rim_level, rim, core, gain, edema = (
            brain + u(0.12, 0.26), brain + u(0.14, 0.30), u(0.15, 0.3), brain - u(0.05, 0.2),
            u(0.04, 0.08), u(0.0, 0.25),
        )  # fmt: skip
    elif name == "pituitary_adenoma":
        level, rim_level, rim, core, gain, edema = (
            brain + u(0.06, 0.18), brain + u(0.06, 0.18), 0.2, brain + u(0.06, 0.18),
            0.01, 0.0,
        )  # fmt: skip
    else:  # craniopharyngioma
        lobes[:, 0] = rng.uniform(0.0, 0.1, 3)
        level, rim_level, rim, core, gain, edema = (
            brain + u(0.2, 0.35), brain + u(0.28, 0.45), u(0.15, 0.3), brain - u(0.12, 0.28),
            u(0.02, 0.05), 0.0,
        )  # fmt: skip
    return _Tumour(
        label=label,
        x=x,
        y=y,
        z=z,
        r=r,
        rz=r * float(rng.uniform(0.8, 1.2)),
        lobes=lobes,
        level=float(level),
        rim_level=float(rim_level),
        rim=float(rim),
        core_level=float(core),
        texture=texture,
        texture_gain=float(gain),
        edema=float(edema),
    )


def _field(texture: np.ndarray, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
    out = np.zeros_like(x)
    for kx, ky, kz, phase, amp in texture:
        out += amp * np.cos(kx * x + ky * y + kz * z + phase)
    return out


def _render_axial(
    head: _Head,
    tumour: _Tumour,
    x: np.ndarray,
    y: np.ndarray,
    z: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One axial slice at height ``z`` (mm from the head centre): (image in [0,1], mask)."""
    # Head frame: centre and tilt.
    cos_t, sin_t = np.cos(head.tilt), np.sin(head.tilt)
    hx = (x - head.cx) * cos_t + (y - head.cy) * sin_t
    hy = -(x - head.cx) * sin_t + (y - head.cy) * cos_t
    img = np.zeros_like(x)
    mask = np.zeros(x.shape, dtype=np.uint8)
    shrink2 = 1.0 - (z / head.c) ** 2
    if shrink2 <= 0.02:
        return img, mask
    shrink = np.sqrt(shrink2)

    def inside(margin: float) -> np.ndarray:
        a = max(head.a * shrink - margin, 0.5)
        b = max(head.b * shrink - margin, 0.5)
        result: np.ndarray = (hx / a) ** 2 + (hy / b) ** 2 <= 1.0
        return result

    head_in = inside(0.0)
    skull_in = inside(head.scalp)
    brain_in = inside(head.scalp + head.skull)
    img[head_in] = head.scalp_level
    img[skull_in] = 0.08
    brain = head.brain_level + _field(head.texture, hx, hy, z)
    # Lateral ventricles (upper half) and brainstem (lower half).
    if -0.05 * head.c < z < 0.6 * head.c:
        vs = head.ventricle_size * (1.0 - abs(z - 0.25 * head.c) / (0.6 * head.c))
        for side in (-1.0, 1.0):
            d = ((hx - side * head.ventricle_dx) / (2.2 * vs)) ** 2 + ((hy + 2.0) / (8.0 * vs)) ** 2
            brain = np.where(d <= 1.0, 0.12, brain)
    if z < -0.1 * head.c:
        d = (hx / 5.5) ** 2 + ((hy - 0.3 * head.b) / 5.0) ** 2
        brain = np.where(d <= 1.0, brain + 0.06, brain)
    img = np.where(brain_in, brain, img)

    # Tumour, drawn in the head frame and clipped to the brain.
    tx, ty = hx - tumour.x, hy - tumour.y
    theta = np.arctan2(ty, tx)
    radius = tumour.r * (
        1.0 + sum(amp * np.cos((k + 2) * theta + ph) for k, (amp, ph) in enumerate(tumour.lobes))
    )
    rho = np.sqrt((np.hypot(tx, ty) / radius) ** 2 + ((z - tumour.z) / tumour.rz) ** 2)
    fine = tumour.texture_gain * _field(tumour.texture, tx, ty, z - tumour.z)
    core_edge = 1.0 - tumour.rim
    name = CLASS_NAMES[tumour.label]
    if tumour.edema > 0:
        halo = brain_in & (rho > 1.0) & (rho <= 1.0 + tumour.edema)
        img = np.where(halo, img - 0.08, img)
        mask[halo] = _EDEMA
    core = brain_in & (rho <= core_edge)
    rim = brain_in & (rho > core_edge) & (rho <= 1.0)
    if name == "craniopharyngioma":
        # Fluid cyst inside a calcified, speckled rim.
        speckle = 0.12 * (np.cos(5.0 * theta + 3.0 * tumour.texture[0, 3]) > 0.3)
        img = np.where(core, tumour.core_level + fine, img)
        img = np.where(rim, tumour.rim_level + speckle + fine, img)
        mask[core] = _NECROTIC_OR_CYST
        mask[rim] = _ENHANCING
    elif name == "schwannoma":
        cysts = core & (fine > 0.6 * tumour.texture_gain * 2.0)
        img = np.where(core | rim, tumour.level + fine, img)
        img = np.where(rim, tumour.rim_level + fine, img)
        img = np.where(cysts, tumour.core_level, img)
        mask[core | rim] = _ENHANCING
        mask[cysts] = _NECROTIC_OR_CYST
    elif name == "chordoma":
        img = np.where(core | rim, tumour.level + fine, img)
        mask[core | rim] = _NON_ENHANCING
        septa = (core | rim) & (fine > 1.2 * tumour.texture_gain)
        img = np.where(septa, tumour.rim_level + 0.15, img)
        mask[septa] = _ENHANCING
    elif name == "meningioma":
        img = np.where(core, tumour.core_level + fine, img)
        img = np.where(rim, tumour.rim_level + fine, img)
        mask[core] = _NON_ENHANCING
        mask[rim] = _ENHANCING
    else:  # pituitary adenoma: homogeneous
        img = np.where(core | rim, tumour.level + fine, img)
        mask[core | rim] = _NON_ENHANCING

    # Smooth bias field (multiplicative) and Rician-like noise.
    nx, ny = x / (_FOV_MM / 2), y / (_FOV_MM / 2)
    nz = z / head.c
    c = head.bias
    bias = 1.0 + c[0] * nx + c[1] * ny + c[2] * nz + c[3] * nx * ny + c[4] * nx**2 + c[5] * ny**2
    img = img * bias
    n1 = rng.normal(0.0, head.noise, img.shape)
    n2 = rng.normal(0.0, head.noise, img.shape)
    img = np.sqrt((img + n1) ** 2 + n2**2)
    return np.clip(img, 0.0, 1.0).astype(np.float32), mask


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (mm): x grows to the image right, y grows downwards."""
    px = _FOV_MM / size
    coords = (np.arange(size) + 0.5) * px - _FOV_MM / 2
    y, x = np.meshgrid(coords, coords, indexing="ij")
    return x, y


def _check_label(label: int) -> int:
    if not 0 <= int(label) < len(CLASS_NAMES):
        raise ValueError(
            f"label must be in range(0, {len(CLASS_NAMES)}) ({', '.join(CLASS_NAMES)}), "
            f"got {label!r}"
        )
    return int(label)


def make_phantom_slices(
    n_per_class: int, *, size: int = 64, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled 2D axial phantom slices through each case's tumour centre.

    Args:
        n_per_class: slices per class (>= 1).
        size: image side in pixels (the field of view is always 64 mm).
        seed: the only source of randomness; the same seed gives the same arrays.

    Returns:
        ``(images, labels)``: float32 ``(N, size, size)`` in [0, 1] and int64 ``(N,)`` with
        ``N = 5 * n_per_class``; classes are interleaved (label ``i % 5`` for slice ``i``).
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    n_classes = len(CLASS_NAMES)
    n = n_per_class * n_classes
    x, y = _grid(size)
    images = np.empty((n, size, size), dtype=np.float32)
    labels = np.arange(n, dtype=np.int64) % n_classes
    children = np.random.SeedSequence(seed).spawn(n)
    z_fov = 24 * _SLICE_MM
    for i in range(n):
        rng = np.random.default_rng(children[i])
        head = _draw_head(rng, z_fov)
        tumour = _draw_tumour(int(labels[i]), head, rng)
        images[i], _ = _render_axial(head, tumour, x, y, tumour.z, rng)
    logger.debug("made %s phantom slices of %sx%s (seed %s)", n, size, size, seed)
    return images, labels


def make_phantom_volume(
    label: int, *, shape: tuple[int, int, int] = (64, 64, 24), seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 3D phantom case of one tumour class with its sub-region mask.

    The array axes are (x: patient left -> right, y: posterior -> anterior, z: inferior ->
    superior), so the affine is a plain RAS+ scaling: 64 mm in-plane field of view
    (1 mm voxels at 64 px) and 2 mm slices, deliberately anisotropic. The axial slice with
    the largest tumour area, displayed radiologically (anterior up, patient right on the
    left), looks like :func:`make_phantom_slices` output.

    Args:
        label: class index into :data:`CLASS_NAMES`.
        shape: (nx, ny, nz) voxels.
        seed: the only source of randomness.

    Returns:
        ``(volume, mask, affine)``: float32 volume in [0, 1]; uint8 mask with BraTS-like
        sub-regions (1 necrosis/cyst, 2 oedema, 3 non-enhancing, 4 enhancing, 0 elsewhere),
        non-empty and inside the brain; float64 4x4 voxel-to-world affine (RAS+, mm).
    """
    label = _check_label(label)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be three sizes >= 4 (nx, ny, nz), got {shape!r}")
    nx, ny, nz = (int(s) for s in shape)
    if nx != ny:
        raise ValueError(f"in-plane shape must be square (nx == ny), got {shape!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, label]))
    z_fov = nz * _SLICE_MM
    head = _draw_head(rng, z_fov)
    tumour = _draw_tumour(label, head, rng)
    x, y = _grid(nx)
    volume = np.zeros((nx, ny, nz), dtype=np.float32)
    mask = np.zeros((nx, ny, nz), dtype=np.uint8)
    for k in range(nz):
        z = (k + 0.5) * _SLICE_MM - z_fov / 2
        img, msk = _render_axial(head, tumour, x, y, z, rng)
        # display[r, c] -> voxel (i, j) with i = nx - 1 - c (right is on the left),
        # j = ny - 1 - r (anterior is at the top).
        volume[:, :, k] = img[::-1, ::-1].T
        mask[:, :, k] = msk[::-1, ::-1].T
    if not mask.any():  # pragma: no cover - the tumour centre always lies inside the brain
        raise RuntimeError(f"phantom volume for label {label}, seed {seed} has an empty mask")
    px = _FOV_MM / nx
    affine = np.diag([px, px, _SLICE_MM, 1.0])
    affine[:3, 3] = [-_FOV_MM / 2 + px / 2, -_FOV_MM / 2 + px / 2, -z_fov / 2 + _SLICE_MM / 2]
    return volume, mask, affine
