"""benchmarks/_stats.py: the exact Student t quantile (with and without scipy) and the verdict
wording for degenerate comparisons (zero spread, one seed)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _stats  # noqa: E402

# t_{0.975, df} to 6 decimals (scipy.stats.t.ppf / standard tables with more digits)
KNOWN = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 9: 2.262157,
         30: 2.042272, 40: 2.021075, 120: 1.979930}


@pytest.mark.parametrize("scipy_available", [True, False])
def test_t975_is_exact(monkeypatch, scipy_available):
    if scipy_available:
        pytest.importorskip("scipy.stats")
    else:
        monkeypatch.setitem(sys.modules, "scipy.stats", None)    # `from scipy.stats import t` fails
    for df, value in KNOWN.items():
        assert _stats.t975(df) == pytest.approx(value, abs=1e-6), df
    assert _stats.t_quantile(0.995, 2) == pytest.approx(9.924843, abs=1e-6)


def test_t_quantile_refuses_bad_arguments():
    with pytest.raises(ValueError, match="degrees of freedom"):
        _stats.t975(0)
    with pytest.raises(ValueError, match="p must lie"):
        _stats.t_quantile(0.3, 4)


def test_interval_uses_the_exact_quantile():
    s = _stats.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729749464 / 3 ** 0.5
    assert s["ci95"] == pytest.approx([2 - half, 2 + half], abs=1e-12)


def test_zero_spread_difference_reads_identical_not_significant():
    cmp = _stats.paired({0: 84, 1: 84, 2: 84}, {0: 66, 1: 66, 2: 66}, "ode", "hbode")
    line = _stats.verdict(cmp, scale=1.0, unit="NFE/step")
    assert line == "hbode − ode = -18.00 NFE/step, identical on every seed (n=3)"
    assert "significant" not in line


def test_one_seed_says_no_interval():
    line = _stats.verdict(_stats.paired({0: 0.9}, {0: 0.95}, "a", "b"))
    assert line == "b − a = +5.00 points on one seed (n=1, no interval)"
