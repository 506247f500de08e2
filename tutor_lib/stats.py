"""Paired differences over seeds, with bootstrap intervals: how notebook 07 reads its experiments.

Two arms that share a seed share everything random (data, initial weights, batch order), so
the question "is arm A better than arm B?" is about the per-seed differences d_i = a_i - b_i.
With a handful of seeds we report their mean and a 95 % percentile bootstrap interval:
resample the seeds (pairs) with replacement, take the mean of each resample, and keep the
2.5th and 97.5th percentiles of those means. An interval that excludes 0 says the runs show
a difference of that sign; one that straddles 0 says they do not settle it. With 8 seeds the
bootstrap is rough (it cannot see beyond the 8 values it has), so we read it as a summary of
these runs, not as a guarantee about other seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _vector(name: str, values: Sequence[float]) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {type(values).__name__}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per seed), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds a NaN or an infinite value: {array.tolist()}")
    return array


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of the paired differences a - b, and its 95 % percentile bootstrap interval -> (mean, low, high).

    a, b: one value per seed, paired by position (length n >= 2). Each of the n_boot resamples
    draws n pairs with replacement; low and high are the 2.5th and 97.5th percentiles of the
    resamples' mean differences. The same seed gives the same interval.
    """
    a, b = _vector("a", a), _vector("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must be paired, one value per seed each; got {len(a)} and {len(b)} values")
    if len(a) < 2:
        raise ValueError(f"need at least 2 pairs to bootstrap, got {len(a)}")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive whole number, got {n_boot!r}")
    d = a - b  # (n,)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(int(n_boot), len(d)))].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(low), float(high)


def mean_interval(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The mean of one arm over seeds and its 95 % bootstrap interval -> (mean, low, high)."""
    values = _vector("values", values)
    return paired_bootstrap(values, np.zeros_like(values), n_boot, seed)


def describe(a: Sequence[float], b: Sequence[float] | None = None, percent: bool = True, digits: int = 1) -> str:
    """'+5.8 points [+1.2, +10.4]' for a paired difference (b given), '93.3% [90.1, 96.0]' for one arm.

    Fractions are shown in percent (points for a difference) when percent is True.
    """
    scale = 100.0 if percent else 1.0
    if b is None:
        mean, low, high = mean_interval(a)
        unit = "%" if percent else ""
        return f"{scale * mean:.{digits}f}{unit} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    mean, low, high = paired_bootstrap(a, b)
    unit = " points" if percent else ""
    return f"{scale * mean:+.{digits}f}{unit} [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


def verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """'higher' or 'lower' when the interval of a - b excludes 0, else 'not settled'."""
    _, low, high = paired_bootstrap(a, b)
    return "higher" if low > 0 else "lower" if high < 0 else "not settled"
