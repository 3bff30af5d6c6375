"""Confidence intervals for benchmark accuracies: per-model means and paired seed differences.

    mean_ci([0.931, 0.934, 0.929])                  # {"mean", "std", "n", "ci95": [lo, hi], ...}
    cmp = paired({0: 0.931, 1: 0.934}, {0: 0.935, 1: 0.933})   # b - a on the seeds both have
    verdict("resnet20", "lm_resnet20", cmp)         # 'lm_resnet20 − resnet20 = +0.15 points, ...'

Seed s gives every model the same data order, augmentation and initial weights of the shared
parts, so the per-seed differences d_s = b_s − a_s are paired. The 95% interval is Student's t:
mean(d) ± t_{0.975, n−1} · std(d) / √n (exact for normal differences; with n ≥ 5 also a fair
approximation otherwise). No scipy: the GPU image need not have it.
"""
from __future__ import annotations

import math
import statistics

# t_{0.975, df} for df = 1..30 (two-sided 95%); beyond 30 the normal 1.96 is within 2%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


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
    significant at n=5' (values scaled by ``scale``: accuracies in percentage points)."""
    head = f"{cmp['b']} − {cmp['a']}"
    if cmp["n"] == 0:
        return f"{head}: no common seeds yet"
    diff = cmp["mean_diff"] * scale
    if cmp["n"] < 2:
        return f"{head} = {diff:+.2f} {unit} on one seed: no interval yet (n=1)"
    lo, hi = (v * scale for v in cmp["ci95"])
    if significant(cmp):
        word = f"significant at n={cmp['n']} ({cmp['b'] if diff > 0 else cmp['a']} better)"
    else:
        word = f"not significant at n={cmp['n']}"
    return f"{head} = {diff:+.2f} {unit}, 95% CI [{lo:+.2f}, {hi:+.2f}]: {word}"
