"""Statistics defined in every case (issue 12 item 2), against hand computations and statsmodels.

Reference numbers:

- Zero discordant pairs of n: Tango's score statistic at delta > 0 reduces to
  -sqrt(n delta / (1 - delta)) (the constrained MLE of q21 is 0), so the bound solves
  n delta / (1 - delta) = z^2: delta = z^2 / (n + z^2). At n = 100 (a Figure 6 reader: the
  paper's percentages are whole numbers of 100 readings): 3.8415 / 103.8415 = 0.0370, i.e.
  [-0.037, 0.037], inside the 0.05 margin: non-inferior.
- A Figure 6 reader, n = 100: 72 both correct, 23 both wrong, 2 right only on the original,
  3 right only on the protected image. Difference +0.01; Wald [-0.034, 0.054]
  (statsmodels), Tango [-0.044, 0.068] (the issue's figures).
- At delta = 0 Tango's statistic is McNemar's (x12 - x21) / sqrt(x12 + x21), so 0 lies outside
  the interval exactly when statsmodels' uncorrected asymptotic McNemar chi^2 exceeds z^2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.stats.contingency_tables import SquareTable, mcnemar
from statsmodels.stats.weightstats import DescrStatsW

from medcrypt.study import tango_interval, tango_score
from medcrypt.study._stats import difference, mcnemar_exact, stuart_maxwell

Z = float(norm.ppf(0.975))


def _reader(both: int, wrong: int, only_o: int, only_p: int) -> tuple[np.ndarray, np.ndarray]:
    """correct(original), correct(protected) per paired reading."""
    co = np.array([True] * both + [False] * wrong + [True] * only_o + [False] * only_p)
    cp = np.array([True] * both + [False] * wrong + [False] * only_o + [True] * only_p)
    return co, cp


def test_zero_discordance_hand_computation_and_non_inferiority() -> None:
    bound = Z**2 / (100 + Z**2)
    assert bound == pytest.approx(0.036993, abs=1e-6)
    low, high = tango_interval(0, 0, 100)
    assert (low, high) == pytest.approx((-bound, bound), abs=1e-9)
    assert (round(low, 3), round(high, 3)) == (-0.037, 0.037)
    co, cp = _reader(72, 28, 0, 0)
    diff, wald, ni, non_inferior = difference(co, cp, alpha=0.05, margin=0.05)
    assert (diff.ci_low, diff.ci_high) == pytest.approx((-bound, bound), abs=1e-9)
    assert non_inferior is True and ni.p_value is not None and ni.p_value < 0.025
    assert wald.ci_low is None and wald.not_defined is not None  # Wald has SE 0 here
    for n in (1, 7, 30, 612):
        assert tango_interval(0, 0, n)[1] == pytest.approx(Z**2 / (n + Z**2), abs=1e-9)


def test_zero_discordance_mcnemar_is_p_one_as_statsmodels_says() -> None:
    table = np.array([[72, 0], [0, 28]])
    assert mcnemar(table, exact=True).pvalue == 1.0
    s = mcnemar_exact(72, 0, 0, 28)
    assert s.p_value == 1.0 and s.value == 1.0 and s.not_defined is None
    assert s.note is not None and "no discordant pair" in s.note


def test_figure6_reader_wald_vs_tango() -> None:
    co, cp = _reader(72, 23, 2, 3)
    diff, wald, _ni, non_inferior = difference(co, cp, alpha=0.05, margin=0.05)
    assert diff.value == pytest.approx(0.01)
    assert (round(wald.ci_low, 3), round(wald.ci_high, 3)) == (-0.034, 0.054)
    sm = DescrStatsW(cp.astype(float) - co.astype(float)).zconfint_mean()
    assert (wald.ci_low, wald.ci_high) == pytest.approx(sm)
    assert (round(diff.ci_low, 3), round(diff.ci_high, 3)) == (-0.044, 0.068)
    assert diff.ci_high - diff.ci_low > wald.ci_high - wald.ci_low  # Wald is too narrow
    assert non_inferior is True  # -0.044 > -0.05


@pytest.mark.parametrize(("x12", "x21", "n"), [(3, 2, 100), (9, 1, 40), (0, 6, 20), (5, 5, 50)])
def test_tango_at_zero_is_mcnemar_and_bounds_solve_the_score_equation(x12, x21, n) -> None:  # type: ignore[no-untyped-def]
    assert tango_score(x12, x21, n, 0.0) == pytest.approx((x12 - x21) / math.sqrt(x12 + x21))
    chi2 = mcnemar(np.array([[0, x12], [x21, n - x12 - x21]]), exact=False, correction=False)
    low, high = tango_interval(x12, x21, n)
    assert (low > 0 or high < 0) == (chi2.statistic > Z**2)
    assert tango_score(x12, x21, n, low) == pytest.approx(Z, abs=1e-6)
    assert tango_score(x12, x21, n, high) == pytest.approx(-Z, abs=1e-6)
    assert low < (x12 - x21) / n < high


def test_tango_interval_stays_in_range_at_the_extremes() -> None:
    low, high = tango_interval(5, 0, 5)  # everyone better on one version
    assert high == 1.0 and 0 < low < 1
    low, high = tango_interval(0, 5, 5)
    assert low == -1.0 and -1 < high < 0


def test_stuart_maxwell_drops_a_class_without_discordant_pairs() -> None:
    """Class C has only agreements: statsmodels on the full table is singular."""
    table = np.array([[5, 2, 0], [1, 6, 0], [0, 0, 4]])
    s = stuart_maxwell(table, ["A", "B", "C"])
    assert s.value is not None and s.df == 1
    assert s.note == "classes without any discordant pair left out: C; test on 2 classes, df = 1"
    # with two classes left, Stuart-Maxwell is McNemar's uncorrected chi^2: (2 - 1)^2 / 3
    assert s.statistic == pytest.approx(1 / 3)
    reduced = SquareTable(table[:2, :2], shift_zeros=False).homogeneity("stuart_maxwell")
    assert s.p_value == pytest.approx(reduced.pvalue)
    # no discordant pair at all: still not defined, and said why
    none = stuart_maxwell(np.diag([3, 4, 5]), ["A", "B", "C"])
    assert none.value is None and "no case got different diagnoses" in str(none.not_defined)


def test_stuart_maxwell_keeps_every_class_when_all_have_discordance() -> None:
    table = np.array([[5, 2, 1], [1, 6, 2], [1, 1, 4]])
    s = stuart_maxwell(table, ["A", "B", "C"])
    full = SquareTable(table, shift_zeros=False).homogeneity("stuart_maxwell")
    assert s.statistic == pytest.approx(full.statistic) and s.df == 2
    assert s.note == "test on all 3 classes, df = 2"
