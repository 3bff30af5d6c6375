"""Confidence intervals for benchmark accuracies: per-model means and paired seed differences.

    mean_ci([0.931, 0.934, 0.929])                  # {"mean", "std", "n", "ci95": [lo, hi], ...}
    cmp = paired({0: 0.931, 1: 0.934}, {0: 0.935, 1: 0.933})   # b - a on the seeds both have
    verdict("resnet20", "lm_resnet20", cmp)         # 'lm_resnet20 − resnet20 = +0.15 points, ...'

Seed s gives every model the same data order, augmentation and initial weights of the shared
parts, so the per-seed differences d_s = b_s − a_s are paired. The 95% interval is Student's t:
mean(d) ± t_{0.975, n−1} · std(d) / √n (exact for normal differences; with n ≥ 5 also a fair
approximation otherwise). The quantile is exact: scipy's ``t.ppf`` when scipy imports, else
the same number from the regularised incomplete beta function (the GPU image need not have
scipy).
"""
from __future__ import annotations

import math
import statistics

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (0.5 < p < 1, df >= 1),
    exact to rounding: scipy.stats.t.ppf if scipy imports, else bisection on the t CDF."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if not 0.5 < p < 1.0:
        raise ValueError(f"p must lie in (0.5, 1), got {p}")
    try:
        from scipy.stats import t as student_t
    except ImportError:
        student_t = None
    if student_t is not None:
        return float(student_t.ppf(p, df))
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (df >= 1), exact."""
    return t_quantile(0.975, df)


def mean_ci(values) -> dict:
    """Mean, sample std, n and the 95% t-interval of the mean (``None`` bounds for n < 2)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return dict(mean=None, std=None, n=0, ci95=[None, None], values=[])
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = t975(n - 1) * std / math.sqrt(n) if n > 1 else None
    ci = [mean - half, mean + half] if half is not None else [None, None]
    return dict(mean=mean, std=std, n=n, ci95=ci, values=values)


def paired(a: dict, b: dict, name_a: str = "a", name_b: str = "b") -> dict:
    """Paired comparison of ``b`` against ``a`` (each ``{seed: value}``) on their common seeds:
    ``{"a", "b", "n", "seeds", "diffs", "mean_diff", "std", "ci95"}`` with diff = b − a."""
    seeds = sorted(set(a) & set(b))
    diffs = [float(b[s]) - float(a[s]) for s in seeds]
    stats = mean_ci(diffs)
    return dict(a=name_a, b=name_b, n=stats["n"], seeds=seeds, diffs=diffs,
                mean_diff=stats["mean"], std=stats["std"], ci95=stats["ci95"])


def significant(cmp: dict) -> bool:
    """Whether the 95% interval of a `paired` comparison excludes zero."""
    lo, hi = cmp["ci95"]
    return lo is not None and (lo > 0 or hi < 0)


def verdict(cmp: dict, scale: float = 100.0, unit: str = "points") -> str:
    """One line: 'lm_resnet20 − resnet20 = +0.12 points, 95% CI [−0.10, +0.34]: not
    significant at n=5' (values scaled by ``scale``: accuracies in percentage points). A
    difference that is the same on every seed has no spread to test: it reads 'identical on
    every seed (n=3)'; one seed reads '(n=1, no interval)'."""
    head = f"{cmp['b']} − {cmp['a']}"
    if cmp["n"] == 0:
        return f"{head}: no common seeds yet"
    diff = cmp["mean_diff"] * scale
    if cmp["n"] < 2:
        return f"{head} = {diff:+.2f} {unit} on one seed (n=1, no interval)"
    if cmp["std"] == 0:
        return f"{head} = {diff:+.2f} {unit}, identical on every seed (n={cmp['n']})"
    lo, hi = (v * scale for v in cmp["ci95"])
    if significant(cmp):
        word = f"significant at n={cmp['n']} ({cmp['b'] if diff > 0 else cmp['a']} better)"
    else:
        word = f"not significant at n={cmp['n']}"
    return f"{head} = {diff:+.2f} {unit}, 95% CI [{lo:+.2f}, {hi:+.2f}]: {word}"


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` >= 1 degrees of freedom: the regularised
    incomplete beta I_{df/(df+t^2)}(df/2, 1/2), exact to rounding."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if math.isinf(t):
        return 0.0
    return min(1.0, _betainc(df / 2.0, 0.5, df / (df + t * t)))


def paired_p(cmp: dict) -> float | None:
    """Two-sided p of the paired t-test of a `paired` comparison (None for n < 2; 0 or 1 when
    every seed gives the same difference)."""
    n, std = cmp["n"], cmp["std"]
    if n < 2:
        return None
    if not std:
        return 0.0 if cmp["mean_diff"] else 1.0
    return t_two_sided_p(cmp["mean_diff"] / (std / math.sqrt(n)), n - 1)


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjusted p-values of a family ``{name: p}`` (None entries are left out
    of the family and stay None): the i-th smallest of m becomes max over j <= i of
    min(1, (m - j + 1) p_(j))."""
    ranked = sorted((p, name) for name, p in pvalues.items() if p is not None)
    out, running = {name: None for name in pvalues}, 0.0
    for i, (p, name) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - i) * p))
        out[name] = running
    return out
