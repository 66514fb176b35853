"""The statistics of a tally, each defined (or explained) for every table a study can produce.

- proportions with Wilson score CIs: ``statsmodels.stats.proportion.proportion_confint``;
- Cohen's kappa: ``sklearn.metrics.cohen_kappa_score``, CI from the asymptotic normal
  distribution of ``statsmodels.stats.inter_rater.cohens_kappa``;
- exact McNemar on correctness: ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``;
  with no discordant pair the binomial test of 0 successes in 0 trials gives p = 1.0, which is
  reported as such (there is no evidence of a difference), not as "not defined";
- Bowker symmetry / Stuart-Maxwell marginal homogeneity: ``SquareTable``; for Stuart-Maxwell,
  classes without any discordant pair are dropped first (their row and column of the
  covariance matrix are zero, which makes it singular) and the report says which and the df;
- paired accuracy difference protected - original: Tango's (1998) score interval, computed
  here (no maintained Python library offers it; statsmodels 0.15 has no paired score interval)
  by root-finding on the score statistic with ``scipy.optimize.brentq``; the Wald interval
  (``DescrStatsW.zconfint_mean``) is reported beside it for comparison only: it is too narrow
  at small discordant counts and has zero width when there is none;
- non-inferiority: Tango's score test of H0: difference <= -margin, one-sided, at level
  alpha/2, so "non-inferior" agrees with "the lower bound of the two-sided (1 - alpha) Tango
  interval lies above -margin";
- Fleiss' kappa (statsmodels) and Krippendorff's alpha (``krippendorff.alpha``).

A statistic that a table does not support is reported with ``value=None`` and
``not_defined="not defined because ..."``: never NaN, never an exception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import krippendorff
import numpy as np

from medcrypt.config import StrictModel

# scipy, sklearn and statsmodels (seconds to import) are imported by the functions that use
# them: `study serve` imports this module for its models and answers readers without them

__all__ = ["Stat", "tango_interval", "tango_score"]


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
    #: what the reader of the report must know to interpret the value (dropped classes,
    #: which images were used, ...).
    note: str | None = None


def undefined(method: str, reason: str) -> Stat:
    return Stat(value=None, method=method, not_defined=f"not defined because {reason}")


def finite(x: object) -> float | None:
    """A finite float, or None."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def proportion(count: int, n: int, alpha: float, what: str) -> Stat:
    method = "proportion with Wilson score CI (statsmodels proportion_confint)"
    if n == 0:
        return undefined(method, f"there are no paired readings to compute {what}")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(count, n, alpha=alpha, method="wilson")
    return Stat(value=count / n, ci_low=finite(low), ci_high=finite(high), method=method)


def cohen(orig: Sequence[int], prot: Sequence[int], k: int, alpha: float) -> Stat:
    method = (
        "Cohen's kappa (sklearn cohen_kappa_score); CI from the asymptotic normal "
        "distribution of kappa (statsmodels cohens_kappa)"
    )
    if len(orig) == 0:
        return undefined(method, "there are no paired readings")
    table = np.zeros((k, k), dtype=np.int64)
    for o, p in zip(orig, prot, strict=True):
        table[o, p] += 1
    used_o = np.flatnonzero(table.sum(axis=1))
    used_p = np.flatnonzero(table.sum(axis=0))
    if len(used_o) == 1 and len(used_p) == 1 and used_o[0] == used_p[0]:
        return undefined(
            method,
            "every case received one and the same diagnosis on both versions, so chance "
            "agreement is 1 and kappa is 0/0",
        )
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import cohens_kappa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = finite(cohen_kappa_score(list(orig), list(prot), labels=list(range(k))))
        res = cohens_kappa(table)
        low, high = res.distribution_kappa.interval(1.0 - alpha)
    if value is None:
        return undefined(method, "chance agreement is 1 for these diagnoses")
    if finite(res.std_kappa) is None:
        return Stat(
            value=value,
            method=method,
            not_defined="CI not defined because the asymptotic variance of kappa is not finite",
        )
    return Stat(value=value, ci_low=finite(low), ci_high=finite(high), method=method)


def mcnemar_exact(a: int, b: int, c: int, d: int) -> Stat:
    method = (
        "exact McNemar test on correctness (statsmodels mcnemar, exact=True; binomial); "
        "value = p-value"
    )
    from statsmodels.stats.contingency_tables import mcnemar

    res = mcnemar(np.array([[a, b], [c, d]]), exact=True)
    note = (
        "no discordant pair (no case right on one version only): the exact test of 0 in 0 "
        "trials gives p = 1"
        if b + c == 0
        else None
    )
    p = finite(res.pvalue)
    return Stat(value=p, statistic=finite(res.statistic), p_value=p, method=method, note=note)


def _square(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used = np.flatnonzero(table.sum(axis=0) + table.sum(axis=1))
    return table[np.ix_(used, used)], used


def bowker(table: np.ndarray) -> Stat:
    method = "Bowker's test of symmetry (statsmodels SquareTable.symmetry('bowker')); value = p"
    reduced, used = _square(table)
    if len(used) < 2:
        return undefined(method, "fewer than two diagnoses were used")
    if reduced.sum() - np.trace(reduced) == 0:
        return undefined(method, "no case got different diagnoses on the two versions")
    from statsmodels.stats.contingency_tables import SquareTable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = SquareTable(reduced, shift_zeros=False).symmetry(method="bowker")
    p = finite(res.pvalue)
    if p is None:
        return undefined(method, "the statistic is not finite for this table")
    return Stat(
        value=p, statistic=finite(res.statistic), df=finite(res.df), p_value=p, method=method
    )


def stuart_maxwell(table: np.ndarray, classes: Sequence[str]) -> Stat:
    """Stuart-Maxwell on the classes that have at least one discordant pair."""
    method = (
        "Stuart-Maxwell test of marginal homogeneity "
        "(statsmodels SquareTable.homogeneity('stuart_maxwell')) on the classes with at least "
        "one discordant pair; value = p"
    )
    off = table.sum(axis=0) + table.sum(axis=1) - 2 * np.diag(table)
    keep = np.flatnonzero(off)
    if len(keep) == 0:
        return undefined(method, "no case got different diagnoses on the two versions")
    dropped = [classes[i] for i in range(len(classes)) if i not in set(keep.tolist())]
    reduced = table[np.ix_(keep, keep)]
    # imported before warnings turn into errors below: an import-time warning is no verdict
    from statsmodels.stats.contingency_tables import SquareTable

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            res = SquareTable(reduced, shift_zeros=False).homogeneity(method="stuart_maxwell")
        except (Warning, np.linalg.LinAlgError, ValueError, ZeroDivisionError):
            return undefined(
                method,
                "the covariance of the marginal differences is singular even without the "
                "classes that have no discordant pair (the discordant pairs fall into separate "
                "groups of classes)",
            )
    p = finite(res.pvalue)
    if p is None:
        return undefined(method, "the statistic is not finite for this table")
    df = finite(res.df)
    note = (
        f"classes without any discordant pair left out: {', '.join(dropped)}; "
        f"test on {len(keep)} classes, df = {df:g}"
        if dropped
        else f"test on all {len(keep)} classes, df = {df:g}"
    )
    return Stat(
        value=p, statistic=finite(res.statistic), df=df, p_value=p, method=method, note=note
    )


def _tango_q21(x12: int, x21: int, n: int, delta: float) -> float:
    """Constrained MLE of the cell probability q21 under H0: q12 - q21 = delta (Tango 1998)."""
    a = 2.0 * n
    b = -x12 - x21 + (2.0 * n - x12 + x21) * delta
    c = -x21 * delta * (1.0 - delta)
    disc = max(b * b - 4.0 * a * c, 0.0)
    return (math.sqrt(disc) - b) / (2.0 * a)


def tango_score(x12: int, x21: int, n: int, delta: float) -> float:
    """Tango's score statistic for H0: q12 - q21 = delta in a paired 2x2 table of n pairs.

    ``x12``, ``x21``: the discordant counts; the estimate is (x12 - x21) / n. Decreasing in
    ``delta``; 0 at the estimate.
    """
    num = x12 - x21 - n * delta
    var = n * (2.0 * _tango_q21(x12, x21, n, delta) + delta * (1.0 - delta))
    if var <= 0.0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_interval(x12: int, x21: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Tango's (1998) score CI for q12 - q21: every delta whose |score| <= z_{1-alpha/2}."""
    if n <= 0:
        raise ValueError("Tango's interval needs at least one pair")
    from scipy.optimize import brentq
    from scipy.stats import norm

    z = float(norm.ppf(1.0 - alpha / 2.0))
    est = (x12 - x21) / n
    eps = 1e-12
    lo_end, hi_end = -1.0 + eps, 1.0 - eps
    if est <= lo_end or tango_score(x12, x21, n, lo_end) <= z:
        low = -1.0
    else:
        low = brentq(lambda d: tango_score(x12, x21, n, d) - z, lo_end, est, xtol=1e-12)
    if est >= hi_end or tango_score(x12, x21, n, hi_end) >= -z:
        high = 1.0
    else:
        high = brentq(lambda d: tango_score(x12, x21, n, d) + z, est, hi_end, xtol=1e-12)
    return float(low), float(high)


def difference(
    correct_o: np.ndarray, correct_p: np.ndarray, alpha: float, margin: float
) -> tuple[Stat, Stat, Stat, bool | None]:
    """(Tango difference, Wald difference, non-inferiority test, non-inferior)."""
    diff_method = (
        "paired accuracy difference correct(protected) - correct(original) with Tango's score "
        "CI (Tango 1998; scipy brentq on the score statistic)"
    )
    wald_method = (
        "the same difference with the Wald (z) CI (statsmodels DescrStatsW.zconfint_mean), "
        "for comparison only: too narrow at small discordant counts"
    )
    ni_method = (
        f"Tango's score test, one-sided, H0: difference <= -{margin:g} vs H1: difference > "
        f"-{margin:g}; value = p; non-inferior when p < alpha/2 = {alpha / 2:g} (equivalently, "
        f"the lower bound of the Tango CI lies above -{margin:g})"
    )
    n = len(correct_o)
    if n == 0:
        reason = "there are no paired readings"
        return (
            undefined(diff_method, reason),
            undefined(wald_method, reason),
            undefined(ni_method, reason),
            None,
        )
    # x12: right only on protected, x21: right only on original -> estimate = protected - orig
    x12 = int(np.sum(correct_p & ~correct_o))
    x21 = int(np.sum(correct_o & ~correct_p))
    est = (x12 - x21) / n
    low, high = tango_interval(x12, x21, n, alpha)
    diff = Stat(value=est, ci_low=low, ci_high=high, method=diff_method)
    d = correct_p.astype(np.float64) - correct_o.astype(np.float64)
    if n >= 2 and not np.all(d == d[0]):
        from statsmodels.stats.weightstats import DescrStatsW

        w_low, w_high = DescrStatsW(d).zconfint_mean(alpha=alpha)
        wald = Stat(value=est, ci_low=finite(w_low), ci_high=finite(w_high), method=wald_method)
    else:
        wald = Stat(
            value=est,
            method=wald_method,
            not_defined="CI not defined because every paired difference is the same, so the "
            "Wald standard error is 0 (the score interval above does not have this problem)",
        )
    z = tango_score(x12, x21, n, -margin)
    from scipy.stats import norm

    p = float(norm.sf(z))
    ni = Stat(value=p, statistic=finite(z), p_value=p, method=ni_method)
    return diff, wald, ni, p < alpha / 2


def fleiss(matrix: np.ndarray, k: int) -> Stat:
    """``matrix``: images x readers of class indices, no missing values."""
    method = "Fleiss' kappa (statsmodels fleiss_kappa, method='fleiss')"
    if matrix.shape[1] < 2:
        return undefined(method, "it needs at least two readers")
    if matrix.shape[0] == 0:
        return undefined(method, "no image was read by every reader")
    if np.all(matrix == matrix.flat[0]):
        return undefined(
            method,
            "every reader gave the same diagnosis to every image, so chance agreement is 1",
        )
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    table, _ = aggregate_raters(matrix, n_cat=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = finite(fleiss_kappa(table, method="fleiss"))
    if value is None:
        return undefined(method, "chance agreement is 1 for these answers")
    return Stat(value=value, method=method)


def krippendorff_alpha(matrix: np.ndarray, k: int) -> Stat:
    """``matrix``: readers x images of class indices, NaN where an image was not read."""
    method = "Krippendorff's alpha, nominal (krippendorff.alpha)"
    if matrix.shape[0] < 2:
        return undefined(method, "it needs at least two readers")
    values = matrix[np.isfinite(matrix)]
    if values.size == 0:
        return undefined(method, "there are no answers")
    if np.unique(values).size < 2:
        return undefined(
            method, "only one diagnosis occurs in the answers, so expected disagreement is 0"
        )
    pairable = np.sum(np.isfinite(matrix), axis=0) >= 2
    if not pairable.any():
        return undefined(method, "no image was read by two or more readers")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = finite(
                krippendorff.alpha(
                    reliability_data=matrix,
                    value_domain=list(range(k)),
                    level_of_measurement="nominal",
                )
            )
    except ValueError as exc:
        return undefined(method, f"krippendorff rejected the data ({exc})")
    if value is None:
        return undefined(method, "expected disagreement is 0 for these answers")
    return Stat(value=value, method=method)
