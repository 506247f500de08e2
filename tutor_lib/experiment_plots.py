"""Figures for experiments run with several seeds: every mean is drawn with its 95 % bootstrap interval.

`plot_panels` draws one or more side-by-side sweeps (mean line, interval band, one dot per
seed); `plot_arms` draws categorical comparisons (a bar per arm and metric, an interval, a dot
per seed); `plot_differences` draws paired differences (one dot per seed, the mean and its
interval, and the zero line that decides whether the runs show a difference).
Arrays are (num_seeds, num_x), as `experiments.table` returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .stats import mean_interval, paired_bootstrap


def _intervals(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, low and high of the 95 % bootstrap interval of every column of (num_seeds, num_x)."""
    stats = np.array([mean_interval(column) for column in np.asarray(values, dtype=float).T])  # (num_x, 3)
    return stats[:, 0], stats[:, 1], stats[:, 2]


def _sweep(ax, x: Sequence, values: np.ndarray, label: str, color) -> None:
    values = np.asarray(values, dtype=float)  # (num_seeds, len(x))
    mean, low, high = _intervals(values)
    ax.plot(x, mean, marker="o", color=color, label=f"{label} (mean of {len(values)} seeds)")
    ax.fill_between(x, low, high, color=color, alpha=0.18)
    for row in values:
        ax.scatter(x, row, color=color, s=10, alpha=0.6)


def plot_panels(x: Sequence, panels: Mapping[str, Mapping[str, np.ndarray]], xlabel: str, ylabel: str | Sequence[str],
                suptitle: str = "", log_x: bool = False, percent: bool | Sequence[bool] = True,
                hlines: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """One axis per panel {title: {label: (seeds, len(x))}}, mean line and 95 % interval band; hlines {title: {label: y}}."""
    n = len(panels)
    ylabels = [ylabel] * n if isinstance(ylabel, str) else list(ylabel)
    percents = [percent] * n if isinstance(percent, bool) else list(percent)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.9), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, runs), ylab, pct in zip(axes.flat, panels.items(), ylabels, percents):
        for i, (label, values) in enumerate(runs.items()):
            _sweep(ax, x, 100 * np.asarray(values) if pct else values, label, colors[i % len(colors)])
        for j, (label, y) in enumerate((hlines or {}).get(title, {}).items()):
            ax.axhline(100 * y if pct else y, color="gray", linestyle=("--", ":", "-.")[j % 3], label=label)
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(list(x), [f"{v:g}" for v in x])
        ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_arms(arms: Sequence[str], metrics: Mapping[str, np.ndarray], ylabel: str = "accuracy (%)",
              title: str = "", percent: bool = True) -> Figure:
    """A group of bars per arm, one bar per metric {name: (seeds, len(arms))} at its mean, its interval, a dot per seed."""
    fig, ax = plt.subplots(figsize=(1.9 * len(arms) + 2.5, 4.8))
    width = 0.8 / len(metrics)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, values) in enumerate(metrics.items()):
        values = (100 if percent else 1) * np.asarray(values, dtype=float)  # (num_seeds, len(arms))
        xs = np.arange(len(arms)) + (i - (len(metrics) - 1) / 2) * width
        mean, low, high = _intervals(values)
        ax.bar(xs, mean, width, color=colors[i % len(colors)], alpha=0.8,
               label=f"{name} (mean of {len(values)} seeds)")
        ax.errorbar(xs, mean, yerr=[mean - low, high - mean], fmt="none", ecolor="gray", capsize=3, zorder=2)
        for row in values:
            ax.scatter(xs, row, color="black", s=8, zorder=3)
    ax.set_xticks(np.arange(len(arms)), list(arms))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    return fig


def plot_augmentations(image, position: str, example_fn, jitter, strengths: Sequence[float] = (0.1, 1.0)) -> Figure:
    """One training image, its flip by example_fn with the new label, and hue-jittered copies (labels unchanged)."""
    flipped, new_position = example_fn(image, position)
    panels = [(image, f"original\n'{position}'"), (flipped, f"flipped\n'{new_position}'")]
    panels += [(jitter(image[None], s)[0], f"hue jitter {s:g}\nlabel unchanged") for s in strengths]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.7))
    for ax, (picture, title) in zip(axes, panels):
        ax.imshow(picture.detach().cpu().permute(1, 2, 0).numpy())  # (S, S, 3)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_differences(comparisons: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "",
                     xlabel: str = "difference a - b (points)", percent: bool = True) -> Figure:
    """One row per comparison {label: (a, b)} of per-seed values: a dot per seed for a - b, the mean and its interval."""
    scale = 100.0 if percent else 1.0
    fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(comparisons) + 1.4))
    for row, (a, b) in enumerate(reversed(list(comparisons.values()))):
        d = scale * (np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
        mean, low, high = (scale * v for v in paired_bootstrap(a, b))
        ax.scatter(d, np.full(len(d), row), color="tab:blue", s=12, alpha=0.6, zorder=3)
        ax.plot([low, high], [row, row], color="black", linewidth=2.5, zorder=2)
        ax.scatter([mean], [row], color="black", marker="D", s=30, zorder=4)
    ax.axvline(0.0, color="gray", linestyle="--")
    ax.set_yticks(range(len(comparisons)), list(reversed(list(comparisons))))
    ax.set_xlabel(xlabel)
    ax.set_title(title or "paired differences: a dot per seed, the mean and its 95 % bootstrap interval", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
