"""Figures for the notebooks and the main job. Every function returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .evaluate import answer_questions
from .vocab import decode

STAGE_COLORS = {"stage1": "tab:blue", "stage2": "tab:orange"}
STAGE_TITLES = {"stage1": "Stage 1: feature alignment\n(projector trains)",
                "stage2": "Stage 2: instruction tuning\n(projector + language model train)"}


def _show(ax, image: torch.Tensor) -> None:
    ax.imshow(image.detach().cpu().permute(1, 2, 0).numpy())  # (S, S, 3) for imshow
    ax.set_xticks([])
    ax.set_yticks([])


def plot_samples(dataset, n: int = 10, cols: int = 5) -> Figure:
    """A grid of the first n samples with their question and answer."""
    n = min(n, len(dataset))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.9 * rows), squeeze=False)  # room for 2-line titles
    for ax in axes.flat[n:]:
        ax.axis("off")
    for i, ax in zip(range(n), axes.flat):
        sample = dataset[i]
        _show(ax, sample["image"])
        ax.set_title(f"Q: {decode(sample['question_tokens'])}\nA: {decode(sample['answer_tokens'])}", fontsize=9)
    fig.suptitle("Shapes data: one question per image")
    fig.tight_layout()
    return fig


def plot_loss_curves(losses: dict[str, Sequence[float]]) -> Figure:
    """Per-epoch loss of each stage side by side: losses = {"stage1": [...], "stage2": [...]}."""
    stages = [s for s in ("stage1", "stage2") if losses.get(s)]
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 3.8), squeeze=False)
    for ax, stage in zip(axes.flat, stages):
        values = losses[stage]
        ax.plot(range(1, len(values) + 1), values, color=STAGE_COLORS[stage], linewidth=2)
        ax.set_title(f"{STAGE_TITLES[stage]}\nfinal loss {values[-1]:.4f}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean next-token loss (nats)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_predictions(model, dataset, n: int = 15, cols: int = 5, answers: list[list[int]] | None = None,
                     title: str = "Greedy answers after both stages (green: right, red: wrong)") -> Figure:
    """Images with question, predicted and true answer; green when right, red when wrong."""
    n = min(n, len(dataset))
    subset = [dataset[i] for i in range(n)]
    if answers is None:
        answers = answer_questions(model, subset)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for sample, predicted, ax in zip(subset, answers, axes.flat):
        _show(ax, sample["image"])
        right = predicted == list(sample["answer_tokens"])
        ax.set_title(f"Q: {decode(sample['question_tokens'])}\npred: {decode(predicted) or '(nothing)'}"
                     f"\ntrue: {decode(sample['answer_tokens'])}", fontsize=9,
                     color="tab:green" if right else "tab:red")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_causal_mask(num_patches: int, text_tokens: Sequence[str]) -> Figure:
    """Which positions each position may attend to, over [visual tokens; text tokens]."""
    total = num_patches + len(text_tokens)
    allowed = np.tril(np.ones((total, total)))
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.imshow(allowed, cmap="Blues", vmin=0, vmax=1.3)
    ax.axvline(num_patches - 0.5, color="tab:orange")
    ax.axhline(num_patches - 0.5, color="tab:orange")
    ticks = [num_patches // 2, *range(num_patches, total)]
    ax.set_xticks(ticks, [f"{num_patches} visual\ntokens", *text_tokens], fontsize=8, rotation=90)
    ax.set_yticks(ticks, [f"{num_patches} visual tokens", *text_tokens], fontsize=8)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("position (query)")
    ax.set_title("Causal mask: each position sees itself and everything before it")
    fig.tight_layout()
    return fig
