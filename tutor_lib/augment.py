"""Data augmentation that keeps labels true, and one that does not.

A horizontal flip turns a shape on the left into a shape on the right, so the image can be
flipped only if the position label is flipped too: "top-left" becomes "top-right".
Color and shape survive the flip. A flip that forgets the label swap teaches the model
wrong answers to "where is it ?"; notebook 06 measures both.
"""

from __future__ import annotations

import torch

from .data import ShapesDataset
from .vocab import POSITIONS

HFLIP_POSITION = {
    "top-left": "top-right",
    "top-right": "top-left",
    "bottom-left": "bottom-right",
    "bottom-right": "bottom-left",
    "center": "center",
}
_HFLIP_INDEX = torch.tensor([POSITIONS.index(HFLIP_POSITION[p]) for p in POSITIONS])  # (5,)


def hflip_example(image: torch.Tensor, position: str) -> tuple[torch.Tensor, str]:
    """Mirror a (3, S, S) image left-right and swap left/right in its position label."""
    if position not in HFLIP_POSITION:
        raise ValueError(f"unknown position {position!r}; expected one of {POSITIONS}")
    return image.flip(-1), HFLIP_POSITION[position]


def hflip_dataset(dataset: ShapesDataset, swap_labels: bool = True) -> ShapesDataset:
    """A mirrored copy of every sample; swap_labels=False shows what a label-breaking flip does."""
    positions = _HFLIP_INDEX[dataset.positions] if swap_labels else dataset.positions.clone()
    return ShapesDataset(dataset.images.flip(-1), dataset.colors.clone(), dataset.shapes.clone(),
                         positions, dataset.question_types.clone())


def color_jitter(images: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale each image's R, G, B by random factors in [1 - strength, 1 + strength] -> (N, 3, S, S).

    Small strengths keep colors recognisable; large ones turn red into orange or green into
    blue-ish, so the color label may no longer match the pixels.
    """
    scale = 1 + strength * (2 * torch.rand(len(images), 3, 1, 1, generator=generator) - 1)
    return (images * scale).clamp(0.0, 1.0)
