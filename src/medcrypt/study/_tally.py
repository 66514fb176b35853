"""Tally a reader study: Figure 6 categories and the agreement statistics, per reader and pooled.

The statistics themselves (and which library computes each) are in :mod:`._stats`. This
module pairs the answers of each reader (the diagnosis on the original and on the protected
image of one case), counts the Figure 6 categories and puts every statistic into one
:class:`TallyReport`, which serialises to JSON without NaN.

"Pooled" stacks every (reader, case) pair and treats them as independent; that ignores the
correlation between readers and between cases, so pooled CIs are too narrow for
generalising to new readers. Use the iMRMC export for a proper multi-reader multi-case
analysis.

The report also lists when each reader's sessions were ingested against their not-before
dates (:class:`SessionTiming`), and says which images each across-reader agreement statistic
used when readers have not all answered the same images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from medcrypt.config import StrictModel
from medcrypt.study import _stats as st
from medcrypt.study._imrmc import imrmc_warnings
from medcrypt.study._key import UnblindingKey
from medcrypt.study._log import AnswerRecord, check_answers
from medcrypt.study._stats import Stat
from medcrypt.study._washout import SessionTiming, session_timings

__all__ = [
    "FIGURE6_CATEGORIES",
    "FIGURE6_SPLIT",
    "PAPER_FIGURE6",
    "AcrossReaders",
    "Figure6",
    "PairedSummary",
    "SessionTiming",
    "Stat",
    "TallyReport",
    "paired_answers",
    "tally",
]

logger = logging.getLogger(__name__)

#: the four categories of the paper's Figure 6, in drawing order.
FIGURE6_CATEGORIES = (
    "both_correct",
    "both_wrong",
    "right_only_original",
    "right_only_protected",
)
#: the same with "both wrong" split by whether the two wrong diagnoses agree.
FIGURE6_SPLIT = (
    "both_correct",
    "both_wrong_same_diagnosis",
    "both_wrong_different_diagnosis",
    "right_only_original",
    "right_only_protected",
)
#: the paper's Figure 6 in percent (3 doctors, brain MRI). The paper reports 95% same
#: diagnoses = 72% both correct + 23% both wrong, so its "both wrong" are same-diagnosis.
PAPER_FIGURE6: dict[str, float] = {
    "both_correct": 72.0,
    "both_wrong": 23.0,
    "both_wrong_same_diagnosis": 23.0,
    "both_wrong_different_diagnosis": 0.0,
    "right_only_original": 2.0,
    "right_only_protected": 3.0,
}
_MAX_IDS = 10


class Figure6(StrictModel):
    """Counts and percentages of the Figure 6 categories over ``n_pairs`` paired readings."""

    n_pairs: int
    both_correct: int
    both_wrong: int
    right_only_original: int
    right_only_protected: int
    #: both wrong, split by whether the two wrong diagnoses were the same
    both_wrong_same_diagnosis: int
    both_wrong_different_diagnosis: int
    #: category (FIGURE6_CATEGORIES and FIGURE6_SPLIT) -> percent of n_pairs
    percent: dict[str, float | None]
    #: category -> Wilson score CI of the proportion, in percent
    ci_percent: dict[str, tuple[float, float] | None] = Field(default_factory=dict)


class PairedSummary(StrictModel):
    """Original vs protected for one reader, or for all readers pooled."""

    label: str
    n_pairs: int
    figure6: Figure6
    same_diagnosis: Stat
    cohen_kappa: Stat
    mcnemar: Stat
    #: McNemar's discordant counts: b = right only on original, c = right only on protected
    mcnemar_b: int
    mcnemar_c: int
    bowker: Stat
    stuart_maxwell: Stat
    accuracy_original: Stat
    accuracy_protected: Stat
    #: protected - original with Tango's score CI (the one to use)
    accuracy_difference: Stat
    #: the same with the Wald CI, for comparison only
    accuracy_difference_wald: Stat
    non_inferiority: Stat
    non_inferior: bool | None
    #: rows: diagnosis on the original, columns: diagnosis on the protected image
    confusion: list[list[int]]


class AcrossReaders(StrictModel):
    """Agreement between readers, per version and over every image."""

    n_readers: int
    fleiss_kappa: dict[str, Stat]
    krippendorff_alpha: dict[str, Stat]


class TallyReport(StrictModel):
    """Everything ``medcrypt study tally`` reports; serialisable to JSON (no NaN)."""

    study: str
    design: str
    classes: tuple[str, ...]
    readers: tuple[str, ...]
    alpha: float
    non_inferiority_margin: float
    washout_days: int = 0
    n_cases: int
    n_answers: int
    notes: tuple[str, ...] = Field(default=())
    per_reader: tuple[PairedSummary, ...]
    pooled: PairedSummary
    across_readers: AcrossReaders
    sessions: tuple[SessionTiming, ...] = Field(default=())


def _summary(
    label: str,
    orig: Sequence[int],
    prot: Sequence[int],
    truth: Sequence[int],
    classes: Sequence[str],
    alpha: float,
    margin: float,
) -> PairedSummary:
    o, p, t = (np.asarray(x, dtype=np.int64) for x in (orig, prot, truth))
    n, k = len(o), len(classes)
    co, cp = o == t, p == t
    a = int(np.sum(co & cp))
    b = int(np.sum(co & ~cp))
    c = int(np.sum(~co & cp))
    d = int(np.sum(~co & ~cp))
    d_same = int(np.sum(~co & ~cp & (o == p)))
    counts = {
        "both_correct": a,
        "both_wrong": d,
        "right_only_original": b,
        "right_only_protected": c,
        "both_wrong_same_diagnosis": d_same,
        "both_wrong_different_diagnosis": d - d_same,
    }
    percent = {name: (100.0 * v / n if n else None) for name, v in counts.items()}
    ci: dict[str, tuple[float, float] | None] = {}
    for name, v in counts.items():
        s = st.proportion(v, n, alpha, name)
        ci[name] = (
            (100.0 * s.ci_low, 100.0 * s.ci_high)
            if s.ci_low is not None and s.ci_high is not None
            else None
        )
    fig6 = Figure6(n_pairs=n, percent=percent, ci_percent=ci, **counts)
    table = np.zeros((k, k), dtype=np.int64)
    for x, y in zip(o, p, strict=True):
        table[x, y] += 1
    diff, wald, ni, non_inferior = st.difference(co, cp, alpha, margin)
    return PairedSummary(
        label=label,
        n_pairs=n,
        figure6=fig6,
        same_diagnosis=st.proportion(int(np.sum(o == p)), n, alpha, "the share of same diagnoses"),
        cohen_kappa=st.cohen(list(o), list(p), k, alpha),
        mcnemar=(
            st.mcnemar_exact(a, b, c, d)
            if n
            else st.undefined("exact McNemar test", "there are no paired readings")
        ),
        mcnemar_b=b,
        mcnemar_c=c,
        bowker=st.bowker(table),
        stuart_maxwell=st.stuart_maxwell(table, classes),
        accuracy_original=st.proportion(int(co.sum()), n, alpha, "accuracy"),
        accuracy_protected=st.proportion(int(cp.sum()), n, alpha, "accuracy"),
        accuracy_difference=diff,
        accuracy_difference_wald=wald,
        non_inferiority=ni,
        non_inferior=non_inferior,
        confusion=table.tolist(),
    )


def paired_answers(
    key: UnblindingKey, answers: Sequence[AnswerRecord]
) -> tuple[dict[str, dict[str, dict[str, str]]], list[str]]:
    """reader -> case -> {"original": dx, "protected": dx}, plus notes on anything unusable.

    Raises:
        StudyError: the records disagree with the key (see :func:`._log.answer_log_problems`).
    """
    check_answers(key, answers)
    notes: list[str] = []
    out: dict[str, dict[str, dict[str, str]]] = {r: {} for r in key.config.readers}
    for rec in answers:
        entry = key.images[rec.image_id]
        out[rec.reader].setdefault(entry.case_id, {})[entry.version] = rec.diagnosis
    for reader, cases in out.items():
        half = sorted(c for c, v in cases.items() if len(v) < 2)
        if half:
            notes.append(
                f"reader {reader!r}: {len(half)} case(s) answered on one version only "
                f"(left out of the paired statistics until both sessions are ingested)"
            )
    return out, notes


def tally(key: UnblindingKey, answers: Sequence[AnswerRecord]) -> TallyReport:
    """Compute the whole tally from the key and the stored answers.

    Raises:
        StudyError: the answers disagree with the key (unknown reader, image or diagnosis, a
            wrong session, an image answered twice), all listed with their record numbers.
    """
    cfg = key.config
    classes = list(cfg.classes)
    index = {c: i for i, c in enumerate(classes)}
    truth_by_case = key.cases()
    pairs, notes = paired_answers(key, answers)
    if not answers:
        notes.append("no answers have been ingested yet")

    summaries: list[PairedSummary] = []
    pooled: tuple[list[int], list[int], list[int]] = ([], [], [])
    for reader in cfg.readers:
        o: list[int] = []
        p: list[int] = []
        t: list[int] = []
        for case, versions in sorted(pairs[reader].items()):
            if len(versions) < 2:
                continue
            o.append(index[versions["original"]])
            p.append(index[versions["protected"]])
            t.append(index[truth_by_case[case]])
        summaries.append(_summary(reader, o, p, t, classes, cfg.alpha, cfg.non_inferiority_margin))
        pooled[0].extend(o)
        pooled[1].extend(p)
        pooled[2].extend(t)
    pooled_summary = _summary("pooled", *pooled, classes, cfg.alpha, cfg.non_inferiority_margin)
    notes.extend(imrmc_warnings(key))
    sessions = session_timings(key, answers)
    for row in sessions:
        if row.status != "on time":
            notes.append(f"reader {row.reader!r} session {row.session} {row.status}: {row.detail}")

    return TallyReport(
        study=cfg.name,
        design=cfg.design,
        classes=cfg.classes,
        readers=cfg.readers,
        alpha=cfg.alpha,
        non_inferiority_margin=cfg.non_inferiority_margin,
        washout_days=cfg.washout_days,
        n_cases=len(truth_by_case),
        n_answers=len(answers),
        notes=tuple(notes),
        per_reader=tuple(summaries),
        pooled=pooled_summary,
        across_readers=_across_readers(key, answers, index),
        sessions=tuple(sessions),
    )


def _listed(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_MAX_IDS])
    return shown + (f" and {len(ids) - _MAX_IDS} more" if len(ids) > _MAX_IDS else "")


def _used_images(
    sub: np.ndarray, ids: Sequence[str], readers: Sequence[str], need: int, what: str
) -> str | None:
    """A note naming the images a statistic left out, or None when it used all of them."""
    answered = np.isfinite(sub)
    used = answered.sum(axis=0) >= need
    if used.all():
        return None
    left = [ids[int(j)] for j in np.flatnonzero(~used)]
    missing = {r: int((~answered[i, ~used]).sum()) for i, r in enumerate(readers)}
    who = ", ".join(f"{r} ({m})" for r, m in missing.items() if m)
    return (
        f"computed on {int(used.sum())} of {len(ids)} images ({what}); left out "
        f"{len(left)} image(s) not yet answered by: {who}; left-out image IDs: {_listed(left)}"
    )


def _across_readers(
    key: UnblindingKey, answers: Sequence[AnswerRecord], index: dict[str, int]
) -> AcrossReaders:
    readers = list(key.config.readers)
    r_index = {r: i for i, r in enumerate(readers)}
    image_ids = sorted(key.images)
    col = {iid: j for j, iid in enumerate(image_ids)}
    grid = np.full((len(readers), len(image_ids)), np.nan)
    for rec in answers:
        grid[r_index[rec.reader], col[rec.image_id]] = index[rec.diagnosis]
    k = len(index)
    fleiss: dict[str, Stat] = {}
    kripp: dict[str, Stat] = {}
    for subset in ("original", "protected", "all"):
        cols = [
            j
            for j, iid in enumerate(image_ids)
            if subset == "all" or key.images[iid].version == subset
        ]
        ids = [image_ids[j] for j in cols]
        sub = grid[:, cols]
        complete = sub[:, np.all(np.isfinite(sub), axis=0)]
        f = st.fleiss(complete.T.astype(np.int64), k)
        a = st.krippendorff_alpha(sub, k)
        if len(readers) >= 2 and answers:
            f_note = _used_images(sub, ids, readers, len(readers), "those every reader answered")
            a_note = _used_images(sub, ids, readers, 2, "those answered by two or more readers")
            f = f.model_copy(update={"note": f_note})
            a = a.model_copy(update={"note": a_note})
        fleiss[subset] = f
        kripp[subset] = a
    return AcrossReaders(n_readers=len(readers), fleiss_kappa=fleiss, krippendorff_alpha=kripp)
