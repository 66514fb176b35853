"""Tally a reader study: Figure 6 categories and the agreement statistics, per reader and pooled.

Every statistic comes from a maintained library:

- % same diagnosis and accuracy per version, Wilson CI:
  ``statsmodels.stats.proportion.proportion_confint(method="wilson")``;
- Cohen's kappa between the diagnoses on original and protected images:
  ``sklearn.metrics.cohen_kappa_score`` for the value; the CI is the interval of the
  asymptotic normal distribution of kappa from ``statsmodels.stats.inter_rater.cohens_kappa``
  (``distribution_kappa.interval(1 - alpha)``, the large-sample SE of Fleiss, Cohen & Everitt);
- exact McNemar on correctness: ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``;
- Bowker symmetry / Stuart-Maxwell marginal homogeneity on the full diagnosis table:
  ``SquareTable(...).symmetry("bowker")`` / ``.homogeneity("stuart_maxwell")``;
- paired accuracy difference (protected - original) and the non-inferiority test:
  ``statsmodels.stats.weightstats.DescrStatsW`` on the per-case differences
  d = correct(protected) - correct(original): Wald (z) CI ``zconfint_mean`` and the one-sided
  ``ztest_mean(value=-margin, alternative="larger")`` (H0: difference <= -margin). The
  one-sided test is run at level alpha/2, so "non-inferior" agrees with the usual rule that
  the lower bound of the reported two-sided (1 - alpha) CI lies above -margin;
- Fleiss' kappa across readers: ``statsmodels.stats.inter_rater.fleiss_kappa``;
- Krippendorff's alpha (nominal) across readers: ``krippendorff.alpha``.

"Pooled" stacks every (reader, case) pair and treats them as independent; that ignores the
correlation between readers and between cases, so pooled CIs are too narrow for
generalising to new readers. Use the iMRMC export for a proper multi-reader multi-case
analysis.

A statistic that a table does not support (every answer identical, no discordant pair, a
singular covariance) is reported with ``value=None`` and ``not_defined="not defined because
..."``: never NaN, never an exception.

Category names in Bowker / Stuart-Maxwell: classes that neither version ever received are
dropped from the square table first (they add empty rows and columns that carry no
information but change the degrees of freedom or make the covariance singular).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import krippendorff
import numpy as np
from pydantic import Field
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import SquareTable, mcnemar
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from medcrypt.config import StrictModel
from medcrypt.errors import StudyError
from medcrypt.study._ingest import AnswerRecord
from medcrypt.study._key import UnblindingKey

__all__ = [
    "FIGURE6_CATEGORIES",
    "AcrossReaders",
    "Figure6",
    "PairedSummary",
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


class Stat(StrictModel):
    """One statistic. ``value`` is None exactly when ``not_defined`` says why."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    statistic: float | None = None
    df: float | None = None
    p_value: float | None = None
    method: str
    not_defined: str | None = None


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
    percent: dict[str, float | None]


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
    accuracy_difference: Stat
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
    n_cases: int
    n_answers: int
    notes: tuple[str, ...] = Field(default=())
    per_reader: tuple[PairedSummary, ...]
    pooled: PairedSummary
    across_readers: AcrossReaders


def _undefined(method: str, reason: str) -> Stat:
    return Stat(value=None, method=method, not_defined=f"not defined because {reason}")


def _f(x: object) -> float | None:
    """A finite float, or None."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _proportion(count: int, n: int, alpha: float, what: str) -> Stat:
    method = "proportion with Wilson score CI (statsmodels proportion_confint)"
    if n == 0:
        return _undefined(method, f"there are no paired readings to compute {what}")
    low, high = proportion_confint(count, n, alpha=alpha, method="wilson")
    return Stat(value=count / n, ci_low=_f(low), ci_high=_f(high), method=method)


def _cohen(orig: Sequence[int], prot: Sequence[int], k: int, alpha: float) -> Stat:
    method = (
        "Cohen's kappa (sklearn cohen_kappa_score); CI from the asymptotic normal "
        "distribution of kappa (statsmodels cohens_kappa)"
    )
    n = len(orig)
    if n == 0:
        return _undefined(method, "there are no paired readings")
    table = np.zeros((k, k), dtype=np.int64)
    for o, p in zip(orig, prot, strict=True):
        table[o, p] += 1
    used_o = np.flatnonzero(table.sum(axis=1))
    used_p = np.flatnonzero(table.sum(axis=0))
    if len(used_o) == 1 and len(used_p) == 1 and used_o[0] == used_p[0]:
        return _undefined(
            method,
            "every case received one and the same diagnosis on both versions, so chance "
            "agreement is 1 and kappa is 0/0",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = _f(cohen_kappa_score(list(orig), list(prot), labels=list(range(k))))
        res = cohens_kappa(table)
        low, high = res.distribution_kappa.interval(1.0 - alpha)
    if value is None:
        return _undefined(method, "chance agreement is 1 for these diagnoses")
    std = _f(res.std_kappa)
    if std is None:
        return Stat(
            value=value,
            method=method,
            not_defined="CI not defined because the asymptotic variance of kappa is not finite",
        )
    return Stat(value=value, ci_low=_f(low), ci_high=_f(high), method=method)


def _mcnemar(a: int, b: int, c: int, d: int) -> Stat:
    method = (
        "exact McNemar test on correctness (statsmodels mcnemar, exact=True; binomial); "
        "value = p-value"
    )
    if b + c == 0:
        return _undefined(method, "there is no discordant pair (no case right on one version only)")
    res = mcnemar(np.array([[a, b], [c, d]]), exact=True)
    return Stat(
        value=_f(res.pvalue), statistic=_f(res.statistic), p_value=_f(res.pvalue), method=method
    )


def _square(table: np.ndarray) -> tuple[np.ndarray, int]:
    used = np.flatnonzero(table.sum(axis=0) + table.sum(axis=1))
    return table[np.ix_(used, used)], len(used)


def _bowker(table: np.ndarray) -> Stat:
    method = "Bowker's test of symmetry (statsmodels SquareTable.symmetry('bowker')); value = p"
    reduced, k = _square(table)
    if k < 2:
        return _undefined(method, "fewer than two diagnoses were used")
    off = reduced.sum() - np.trace(reduced)
    if off == 0:
        return _undefined(method, "no case got different diagnoses on the two versions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = SquareTable(reduced, shift_zeros=False).symmetry(method="bowker")
    p = _f(res.pvalue)
    if p is None:
        return _undefined(method, "the statistic is not finite for this table")
    return Stat(value=p, statistic=_f(res.statistic), df=_f(res.df), p_value=p, method=method)


def _stuart_maxwell(table: np.ndarray) -> Stat:
    method = (
        "Stuart-Maxwell test of marginal homogeneity "
        "(statsmodels SquareTable.homogeneity('stuart_maxwell')); value = p"
    )
    reduced, k = _square(table)
    if k < 2:
        return _undefined(method, "fewer than two diagnoses were used")
    if reduced.sum() - np.trace(reduced) == 0:
        return _undefined(method, "no case got different diagnoses on the two versions")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            res = SquareTable(reduced, shift_zeros=False).homogeneity(method="stuart_maxwell")
        except (Warning, np.linalg.LinAlgError, ValueError, ZeroDivisionError):
            return _undefined(
                method, "the covariance matrix of the marginal differences is singular"
            )
    p = _f(res.pvalue)
    if p is None:
        return _undefined(method, "the statistic is not finite for this table")
    return Stat(value=p, statistic=_f(res.statistic), df=_f(res.df), p_value=p, method=method)


def _difference(
    correct_o: np.ndarray, correct_p: np.ndarray, alpha: float, margin: float
) -> tuple[Stat, Stat, bool | None]:
    diff_method = (
        "mean paired difference correct(protected) - correct(original) with Wald (z) CI "
        "(statsmodels DescrStatsW.zconfint_mean)"
    )
    ni_method = (
        f"one-sided z test H0: difference <= -{margin:g} vs H1: difference > -{margin:g} "
        "(statsmodels DescrStatsW.ztest_mean, alternative='larger'); value = p; "
        f"non-inferior when p < alpha/2 = {alpha / 2:g}"
    )
    n = len(correct_o)
    if n == 0:
        reason = "there are no paired readings"
        return _undefined(diff_method, reason), _undefined(ni_method, reason), None
    d = correct_p.astype(np.float64) - correct_o.astype(np.float64)
    mean = float(d.mean())
    if n < 2 or np.all(d == d[0]):
        reason = (
            f"every paired difference is {d[0]:+g}, so the standard error is 0"
            if n >= 2
            else "one paired reading has no standard error"
        )
        return (
            Stat(value=mean, method=diff_method, not_defined=f"CI not defined because {reason}"),
            _undefined(ni_method, reason),
            None,
        )
    stats = DescrStatsW(d)
    low, high = stats.zconfint_mean(alpha=alpha)
    z, p = stats.ztest_mean(value=-margin, alternative="larger")
    diff = Stat(value=mean, ci_low=_f(low), ci_high=_f(high), method=diff_method)
    ni = Stat(value=_f(p), statistic=_f(z), p_value=_f(p), method=ni_method)
    p_f = _f(p)
    return diff, ni, (p_f < alpha / 2) if p_f is not None else None


def _summary(
    label: str,
    orig: Sequence[int],
    prot: Sequence[int],
    truth: Sequence[int],
    k: int,
    alpha: float,
    margin: float,
) -> PairedSummary:
    o, p, t = (np.asarray(x, dtype=np.int64) for x in (orig, prot, truth))
    n = len(o)
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
    }
    percent = {name: (100.0 * v / n if n else None) for name, v in counts.items()}
    fig6 = Figure6(
        n_pairs=n,
        both_wrong_same_diagnosis=d_same,
        both_wrong_different_diagnosis=d - d_same,
        percent=percent,
        **counts,
    )
    table = np.zeros((k, k), dtype=np.int64)
    for x, y in zip(o, p, strict=True):
        table[x, y] += 1
    diff, ni, non_inferior = _difference(co, cp, alpha, margin)
    return PairedSummary(
        label=label,
        n_pairs=n,
        figure6=fig6,
        same_diagnosis=_proportion(int(np.sum(o == p)), n, alpha, "the share of same diagnoses"),
        cohen_kappa=_cohen(list(o), list(p), k, alpha),
        mcnemar=_mcnemar(a, b, c, d),
        mcnemar_b=b,
        mcnemar_c=c,
        bowker=_bowker(table),
        stuart_maxwell=_stuart_maxwell(table),
        accuracy_original=_proportion(int(co.sum()), n, alpha, "accuracy"),
        accuracy_protected=_proportion(int(cp.sum()), n, alpha, "accuracy"),
        accuracy_difference=diff,
        non_inferiority=ni,
        non_inferior=non_inferior,
        confusion=table.tolist(),
    )


def _fleiss(matrix: np.ndarray, k: int) -> Stat:
    """``matrix``: images x readers of class indices, no missing values."""
    method = "Fleiss' kappa (statsmodels fleiss_kappa, method='fleiss')"
    if matrix.shape[1] < 2:
        return _undefined(method, "it needs at least two readers")
    if matrix.shape[0] == 0:
        return _undefined(method, "no image was read by every reader")
    if np.all(matrix == matrix.flat[0]):
        return _undefined(
            method,
            "every reader gave the same diagnosis to every image, so chance agreement is 1",
        )
    table, _ = aggregate_raters(matrix, n_cat=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = _f(fleiss_kappa(table, method="fleiss"))
    if value is None:
        return _undefined(method, "chance agreement is 1 for these answers")
    return Stat(value=value, method=method)


def _krippendorff(matrix: np.ndarray, k: int) -> Stat:
    """``matrix``: readers x images of class indices, NaN where an image was not read."""
    method = "Krippendorff's alpha, nominal (krippendorff.alpha)"
    if matrix.shape[0] < 2:
        return _undefined(method, "it needs at least two readers")
    values = matrix[np.isfinite(matrix)]
    if values.size == 0:
        return _undefined(method, "there are no answers")
    if np.unique(values).size < 2:
        return _undefined(
            method, "only one diagnosis occurs in the answers, so expected disagreement is 0"
        )
    pairable = np.sum(np.isfinite(matrix), axis=0) >= 2
    if not pairable.any():
        return _undefined(method, "no image was read by two or more readers")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = _f(
                krippendorff.alpha(
                    reliability_data=matrix,
                    value_domain=list(range(k)),
                    level_of_measurement="nominal",
                )
            )
    except ValueError as exc:
        return _undefined(method, f"krippendorff rejected the data ({exc})")
    if value is None:
        return _undefined(method, "expected disagreement is 0 for these answers")
    return Stat(value=value, method=method)


def paired_answers(
    key: UnblindingKey, answers: Sequence[AnswerRecord]
) -> tuple[dict[str, dict[str, dict[str, str]]], list[str]]:
    """reader -> case -> {"original": dx, "protected": dx}, plus notes on anything unusable."""
    notes: list[str] = []
    out: dict[str, dict[str, dict[str, str]]] = {r: {} for r in key.config.readers}
    for rec in answers:
        entry = key.images.get(rec.image_id)
        if entry is None or rec.reader not in out:
            raise StudyError(
                f"answer log holds reader {rec.reader!r} / image {rec.image_id!r} that this "
                "key does not know: is it the log of another study?"
            )
        slot = out[rec.reader].setdefault(entry.case_id, {})
        if entry.version in slot:
            raise StudyError(
                f"answer log holds two answers of reader {rec.reader!r} for one image "
                f"({rec.image_id!r}); the log was edited by hand"
            )
        slot[entry.version] = rec.diagnosis
    for reader, cases in out.items():
        half = sorted(c for c, v in cases.items() if len(v) < 2)
        if half:
            notes.append(
                f"reader {reader!r}: {len(half)} case(s) answered on one version only "
                f"(left out of the paired statistics until both sessions are ingested)"
            )
    return out, notes


def tally(key: UnblindingKey, answers: Sequence[AnswerRecord]) -> TallyReport:
    """Compute the whole tally from the key and the stored answers."""
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
        summaries.append(
            _summary(reader, o, p, t, len(classes), cfg.alpha, cfg.non_inferiority_margin)
        )
        pooled[0].extend(o)
        pooled[1].extend(p)
        pooled[2].extend(t)
    pooled_summary = _summary(
        "pooled", *pooled, len(classes), cfg.alpha, cfg.non_inferiority_margin
    )

    across = _across_readers(key, answers, index)
    return TallyReport(
        study=cfg.name,
        design=cfg.design,
        classes=cfg.classes,
        readers=cfg.readers,
        alpha=cfg.alpha,
        non_inferiority_margin=cfg.non_inferiority_margin,
        n_cases=len(truth_by_case),
        n_answers=len(answers),
        notes=tuple(notes),
        per_reader=tuple(summaries),
        pooled=pooled_summary,
        across_readers=across,
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
        sub = grid[:, cols]
        complete = sub[:, np.all(np.isfinite(sub), axis=0)]
        fleiss[subset] = _fleiss(complete.T.astype(np.int64), k)
        kripp[subset] = _krippendorff(sub, k)
    return AcrossReaders(n_readers=len(readers), fleiss_kappa=fleiss, krippendorff_alpha=kripp)
