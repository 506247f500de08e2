"""Data augmentation that keeps labels true, and one that does not.

A horizontal flip turns a shape on the left into a shape on the right, so the image can be
flipped only if the position label is flipped too: "top-left" becomes "top-right".
Color and shape survive the flip. A flip that forgets the label swap teaches the model
wrong answers to "where is it ?"; notebook 07 measures both.
"""

from __future__ import annotations

import math

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
    """Rotate each image's hue by a random angle in [-strength, strength] x 180 degrees -> (N, 3, S, S).

    The rotation turns every RGB vector about the gray axis (1, 1, 1), so black stays black
    and brightness is kept. A small strength (0.1: at most 18 degrees) leaves red red; a
    strength of 1 draws any hue, so a "red" sample is as likely to look green or blue and
    its color label is usually wrong: a label-breaking augmentation. At 120 degrees red
    becomes exactly green, green blue, and blue red.
    """
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    angles = strength * math.pi * (2 * torch.rand(len(images), generator=generator) - 1)  # (N,)
    return (rotate_hue(images, angles)).clamp(0.0, 1.0)


def rotate_hue(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the colors of images (N, 3, S, S) about the gray axis by angles (N,) in radians (Rodrigues)."""
    k = torch.full((3,), 3 ** -0.5, dtype=images.dtype)  # unit gray axis
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=images.dtype)
    cos, sin = angles.cos().view(-1, 1, 1), angles.sin().view(-1, 1, 1)
    rotation = cos * torch.eye(3, dtype=images.dtype) + sin * cross + (1 - cos) * torch.outer(k, k)  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", rotation.to(images.dtype), images)


def jitter_dataset(dataset: ShapesDataset, strength: float, seed: int = 0) -> ShapesDataset:
    """A hue-jittered copy of every sample with the labels left as they were."""
    generator = torch.Generator().manual_seed(seed)
    return ShapesDataset(color_jitter(dataset.images, strength, generator), dataset.colors.clone(),
                         dataset.shapes.clone(), dataset.positions.clone(), dataset.question_types.clone())
