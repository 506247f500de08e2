"""tutor_lib.augment: the label-preserving flip and the hue jitter that can break color labels."""

from __future__ import annotations

import math

import pytest
import torch

from tutor_lib.augment import color_jitter, hflip_dataset, hflip_example, jitter_dataset, rotate_hue
from tutor_lib.data import COLOR_RGB, make_dataset
from tutor_lib.vocab import POSITIONS


def test_hflip_example_mirrors_columns_and_swaps_left_right():
    image = torch.rand(3, 6, 6)
    flipped, position = hflip_example(image, "bottom-left")
    assert torch.equal(flipped[:, :, 0], image[:, :, 5]) and position == "bottom-right"
    assert hflip_example(image, "center")[1] == "center"
    with pytest.raises(ValueError, match="unknown position"):
        hflip_example(image, "left")


def test_hflip_dataset_swaps_labels_only_when_asked():
    data = make_dataset(30, seed=0)
    swapped, kept = hflip_dataset(data), hflip_dataset(data, swap_labels=False)
    assert torch.equal(swapped.images, data.images.flip(-1)) and torch.equal(kept.images, swapped.images)
    assert torch.equal(kept.positions, data.positions)
    for p, q in zip(data.positions.tolist(), swapped.positions.tolist()):
        assert hflip_example(torch.zeros(3, 1, 1), POSITIONS[p])[1] == POSITIONS[q]


def test_rotate_hue_by_120_degrees_turns_red_into_green_and_keeps_gray():
    red = torch.tensor(COLOR_RGB["red"]).view(1, 3, 1, 1)
    green = torch.tensor(COLOR_RGB["green"])
    rotated = rotate_hue(red, torch.tensor([2 * math.pi / 3])).flatten()
    assert torch.allclose(rotated, torch.tensor([0.1, 1.0, 0.1]), atol=1e-5)
    assert rotated.argmax() == green.argmax()
    gray = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(rotate_hue(gray, torch.tensor([1.0])), gray, atol=1e-6)


def test_color_jitter_strength_zero_is_identity_and_strength_one_changes_colors():
    images = make_dataset(200, seed=1).images
    assert torch.allclose(color_jitter(images, 0.0), images.clamp(0, 1))
    mild = color_jitter(images, 0.1, torch.Generator().manual_seed(0))
    strong = color_jitter(images, 1.0, torch.Generator().manual_seed(0))
    dominant = images.sum((2, 3)).argmax(1)  # (N,) the brightest channel of each image
    assert (mild.sum((2, 3)).argmax(1) == dominant).float().mean() == 1.0  # +-18 degrees keeps red red
    assert (strong.sum((2, 3)).argmax(1) == dominant).float().mean() < 0.6  # a random hue usually does not
    assert strong.min() >= 0 and strong.max() <= 1
    with pytest.raises(ValueError, match="strength"):
        color_jitter(images, 1.5)


def test_jitter_dataset_keeps_every_label_and_is_seeded():
    data = make_dataset(20, seed=2)
    a, b = jitter_dataset(data, 1.0, seed=3), jitter_dataset(data, 1.0, seed=3)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, data.images)
    for field in ("colors", "shapes", "positions", "question_types"):
        assert torch.equal(getattr(a, field), getattr(data, field))
