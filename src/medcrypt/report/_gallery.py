"""The run report's pictures: PSNR / SSIM histograms and the per-case gallery."""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medcrypt.errors import StorageError
from medcrypt.report._html import Cell, fmt_float, img_tag, table
from medcrypt.report._images import DisplayWindow, diff_png, figure_png, grey_png, new_figure
from medcrypt.report._run_data import RunData, foreground_metrics, metric_values

__all__ = ["case_html", "full_scale", "histograms_html"]

logger = logging.getLogger(__name__)


def histograms_html(records: Sequence[Mapping[str, Any]]) -> str:
    from matplotlib.ticker import MaxNLocator

    psnr, ssim = metric_values(records, "psnr"), metric_values(records, "ssim")
    if not psnr.size:
        return '<p class="note">No PSNR / SSIM to plot.</p>'
    fg = [foreground_metrics(r.get("metrics", {})) for r in records]
    fg_psnr = np.array([f["psnr"] for f in fg if "psnr" in f and np.isfinite(f["psnr"])])
    fg_ssim = np.array([f["ssim"] for f in fg if "ssim" in f])
    with new_figure(8.4, 2.4, ncols=2) as (fig, axes):
        for ax, whole, fore, name, unit in (
            (axes[0], psnr, fg_psnr, "PSNR", " (dB)"),
            (axes[1], ssim, fg_ssim, "SSIM", ""),
        ):
            bins = int(min(30, max(5, whole.size // 2)))
            ax.hist(whole, bins=bins, color="#2c5d8f", alpha=0.85, label="whole slice")
            if fore.size:
                ax.hist(
                    fore,
                    bins=bins,
                    histtype="step",
                    color="#c0392b",
                    linewidth=1.5,
                    label="foreground",
                )
            ax.axvline(
                float(whole.mean()),
                color="#222",
                linestyle="--",
                linewidth=1,
                label=f"mean {whole.mean():.3g}",
            )
            ax.set_xlabel(name + unit)
            ax.set_ylabel("cases")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.set_title(f"{name} over {whole.size} cases", fontsize=11)
            ax.legend(fontsize=8, frameon=False)
        png = figure_png(fig)
    return f'<div class="figs">{img_tag(png, "histograms of PSNR and SSIM")}</div>'


def _decode(run: RunData, key: str | None) -> np.ndarray | None:
    from medcrypt.medical import decode_png16

    if key is None:
        return None
    try:
        return decode_png16(run.store.get(key))
    except (StorageError, ValueError, OSError) as exc:
        logger.warning("cannot show %s: %s", key, exc)
        return None


def _png_key(objects: Sequence[Mapping[str, Any]]) -> str | None:
    return next((str(o["key"]) for o in objects if o.get("format") == "png" and "key" in o), None)


def case_html(run: RunData, r: Mapping[str, Any], full_scale: float) -> str:
    cid = str(r.get("case_id"))
    prot = _decode(run, _png_key(r.get("outputs", ())))
    orig = _decode(run, _png_key(r.get("originals", ())))
    panels = []
    if prot is not None:
        window = DisplayWindow(orig if orig is not None else prot)
        if orig is not None:
            panels.append(("original", grey_png(orig, window)))
        panels.append(("protected", grey_png(prot, window)))
        if orig is not None and orig.shape == prot.shape:
            panels.append((f"difference ×{1 / full_scale:.0f}", diff_png(prot, orig, full_scale)))
        win = f"display window {window} of [0, 1] for both"
    else:
        win = "no PNG output for this case: nothing to show"
    figs = "".join(
        f"<figure>{img_tag(png, f'{cid} {name}')}<figcaption>{html.escape(name)}"
        "</figcaption></figure>"
        for name, png in panels
    )
    m = r.get("metrics", {})
    fg = foreground_metrics(m)
    sl = r.get("slice", {})
    tied = list(sl.get("tied_indices") or ())
    tie = f"tie among {len(tied)} slices {tied}" if len(tied) > 1 else "no tie"
    if sl.get("fallback"):
        tie += f"; fallback {sl['fallback']}"
    f = f"case.{cid}"
    rows = [
        (
            "PSNR dB (whole / fg)",
            Cell(
                f'<span data-field="{f}.psnr">{fmt_float(m.get("psnr"))}</span> / '
                f"{fmt_float(fg.get('psnr'))}",
                raw=True,
            ),
        ),
        (
            "SSIM (whole / fg)",
            Cell(
                f'<span data-field="{f}.ssim">{fmt_float(m.get("ssim"), 4)}</span> / '
                f"{fmt_float(fg.get('ssim'), 4)}",
                raw=True,
            ),
        ),
        ("L2 / budget", f"{fmt_float(m.get('l2'), 3)} / {fmt_float(m.get('eps'), 3)}"),
        (
            "slice",
            f"index {sl.get('canonical_index', 'n/a')} (stored {sl.get('stored_index')}), "
            f"{fmt_float(sl.get('area_mm2'), 1)} mm², {tie}",
        ),
        ("label", f"{r.get('label_name', 'n/a')} ({r.get('label_source', 'n/a')})"),
    ]
    tag = ""
    if r.get("run_id") != run.run_id:
        tag = f' <span class="tag">run {html.escape(str(r.get("run_id")))}</span>'
    return (
        f'<div class="case" id="case-{html.escape(cid)}"><h3>{html.escape(cid)}{tag}</h3>'
        f'<div class="panels">{figs}</div><p class="note">{html.escape(win)}</p>'
        f"{table(['', ''], rows, cls='kv')}</div>"
    )


def full_scale(records: Sequence[Mapping[str, Any]]) -> float:
    """Difference at full colour: 3x the largest per-pixel RMS change (L2 / sqrt(pixels))."""
    rms = []
    for r in records:
        l2 = r.get("metrics", {}).get("l2")
        shape: Sequence[int] = r.get("slice", {}).get("shape") or ()
        if isinstance(l2, int | float) and len(shape) == 2 and shape[0] * shape[1] > 0:
            rms.append(float(l2) / float(np.sqrt(shape[0] * shape[1])))
    top = max(rms, default=0.0)
    return 3 * top if top > 0 else 0.05
