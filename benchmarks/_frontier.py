"""What protection_figshare.py writes: foreground metrics, JSON rows, Markdown and the plot.

Imported as ``from _frontier import ...`` (benchmarks run as scripts from the repository root).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from medcrypt.processing.protection._foreground import foreground_masks


def perceptual(originals: np.ndarray, released: np.ndarray) -> dict[str, float]:
    """Mean PSNR / SSIM over the whole slice and over its foreground (the image's own mask).

    The mask is computed from the *original* with ``foreground_masks`` for every mode alike,
    so a mode that perturbs the background pays for it in foreground PSNR only through the
    pixels it spends inside the anatomy. Foreground PSNR: ``10 log10(1 / MSE)`` with the MSE
    taken over mask pixels; foreground SSIM: the SSIM map averaged over mask pixels.
    """
    x = np.asarray(originals, dtype=np.float64)
    r = np.asarray(released, dtype=np.float64)
    masks = foreground_masks(x)
    sq = (r - x) ** 2
    p_all, p_fg, s_all, s_fg, fg_share = [], [], [], [], []
    for i in range(len(x)):
        m = masks[i] if masks[i].any() else np.ones_like(masks[i])
        mse, mse_fg = sq[i].mean(), sq[i][m].mean()
        p_all.append(10 * math.log10(1 / mse) if mse > 0 else math.inf)
        p_fg.append(10 * math.log10(1 / mse_fg) if mse_fg > 0 else math.inf)
        s, smap = structural_similarity(x[i], r[i], data_range=1.0, full=True)
        s_all.append(float(s))
        s_fg.append(float(smap[m].mean()))
        fg_share.append(float(m.mean()))
    bg = ~masks
    return {
        "psnr": _finite_mean(p_all),
        "psnr_fg": _finite_mean(p_fg),
        "ssim": float(np.mean(s_all)),
        "ssim_fg": float(np.mean(s_fg)),
        "fg_share": float(np.mean(fg_share)),
        "bg_changed_share": float((sq[bg] > 0).mean()) if bg.any() else 0.0,
    }


def _finite_mean(values: Sequence[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else math.inf


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (a killed run leaves the previous complete file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)


def _p(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def frontier_markdown(result: dict[str, Any]) -> str:
    """The frontier table: one line per mode and budget, both victims."""
    archs = result["config"]["archs"]
    base = result["base"]
    lines = [
        f"Base model {base['arch']} width {base['width']}: clean test accuracy "
        f"{_p(base['acc'])}% (balanced {_p(base['bacc'])}%; the paper's base model: 80%). "
        f"Test majority class {_p(result['chance']['majority'])}%, balanced chance "
        f"{_p(result['chance']['balanced'])}%.",
        "",
        "Clean-trained baselines (original test, final / peak): "
        + "; ".join(
            f"{a}: acc {_p(c['acc_final'])} / {_p(c['acc_peak'])}%, balanced "
            f"{_p(c['bacc_final'])} / {_p(c['bacc_peak'])}%"
            for a, c in result["clean"].items()
        )
        + ".",
        "",
        "| Mode | eps | PSNR fg / whole (dB) | SSIM fg / whole | Target success | Victim "
        "| Orig acc final / peak | Orig balanced final / peak | Enc-test acc final "
        "| Enc / clean |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        pt = row["perceptual_train"]
        for a in archs:
            v = row["victims"].get(a)
            if v is None:
                continue
            o, e = v["original_test"], v["encrypted_test"]
            lines.append(
                f"| {row['mode']} | {row['eps']:.4g} {row['norm']} | {pt['psnr_fg']:.1f} / "
                f"{pt['psnr']:.1f} | {pt['ssim_fg']:.3f} / {pt['ssim']:.3f} "
                f"| {_p(row['target_success'])}% | {a} | {_p(o['acc_final'])} / "
                f"{_p(o['acc_peak'])}% | {_p(o['bacc_final'])} / {_p(o['bacc_peak'])}% "
                f"| {_p(e['acc_final'])}% | {v['relative']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def counter_markdown(result: dict[str, Any]) -> str:
    """One counter-attack table per mode (at the budget nearest the counter target)."""
    out = []
    for mode, c in result.get("counter", {}).items():
        out += [
            f"#### {mode} at {c['psnr_fg']:.1f} dB foreground PSNR (eps {c['eps']:.4g})",
            "",
            c["markdown"],
        ]
    return "\n".join(out)


def key_recovery_markdown(result: dict[str, Any]) -> str:
    """Per key: recovery rate and the true targets' rank per class."""
    rows = result.get("key_recovery", [])
    if not rows:
        return ""
    lines = [
        "| Key | Mode | PSNR fg (dB) | M1 enc-test acc | Classes recovered | True rank per class "
        "(of candidates) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ranks = ", ".join(f"{c['true_rank']}/{r['candidates']}" for c in r["classes"])
        lines.append(
            f"| {r['key']} | {r['mode']} | {r['psnr_fg']:.1f} | {_p(r['m1_encrypted_test'])}% "
            f"| {r['recovered']}/{len(r['classes'])} ({_p(r['recovery_rate'])}%) | {ranks} |"
        )
    return "\n".join(lines) + "\n"


def plot_frontier(result: dict[str, Any], path: Path) -> None:
    """Foreground PSNR vs original-test peak balanced accuracy, one line per mode and victim."""
    try:
        import matplotlib
    except ImportError:  # the GPU image has no matplotlib: the JSON and Markdown still come
        print(f"matplotlib not installed: {path} not drawn", flush=True)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = result["config"]["archs"]
    fig, axes = plt.subplots(1, len(archs), figsize=(5.2 * len(archs), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    modes = list(dict.fromkeys(r["mode"] for r in result["rows"]))
    for ax, arch in zip(axes, archs, strict=True):
        for mode in modes:
            pts = sorted(
                (r["perceptual_train"]["psnr_fg"], r["victims"][arch]["original_test"]["bacc_peak"])
                for r in result["rows"]
                if r["mode"] == mode and arch in r["victims"]
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=mode)
        clean = result["clean"].get(arch)
        if clean is not None:
            ax.axhline(clean["bacc_peak"], color="k", ls="--", lw=1, label="clean-trained")
        ax.axhline(result["chance"]["balanced"], color="grey", ls=":", lw=1, label="chance")
        ax.axhline(0.48, color="red", ls="-.", lw=0.8, label="aim (48%)")
        ax.axvline(35, color="red", ls="-.", lw=0.8)
        ax.set_title(f"victim {arch}")
        ax.set_xlabel("foreground PSNR of released training slices (dB)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("original-test balanced accuracy, peak over epochs")
    axes[-1].legend(fontsize=7, loc="lower left")
    cfg = result["config"]
    fig.suptitle(
        f"figshare-btd {cfg['size']}x{cfg['size']}, victims width {cfg['width']}, "
        f"{cfg['epochs']} epochs",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
