"""Checks for notebook 07_experiments: hflip_example, a label-preserving horizontal flip."""

from __future__ import annotations

import torch

from ..data import draw_shape
from ..vocab import POSITIONS
from ._common import call, equal, expect_tensor, fail, passed, register, short

__all__ = ["check_hflip_example", "expect_flip"]

# Where a shape goes when the image is mirrored left-right.
_MIRROR = {"top-left": "top-right", "top-right": "top-left", "bottom-left": "bottom-right",
           "bottom-right": "bottom-left", "center": "center"}
_UPSIDE_DOWN = {"top-left": "bottom-left", "top-right": "bottom-right", "bottom-left": "top-left",
                "bottom-right": "top-right", "center": "center"}

# Images the student may have produced instead of the mirror image, and what each says.
_IMAGE_MISTAKES = (
    (lambda x: x, "the image is unchanged",
     "flip the pixels too, not only the label: reverse the last dimension, e.g. image.flip(-1)"),
    (lambda x: x.flip(-2), "the image is flipped upside down (rows, dim 1, reversed)",
     "a horizontal flip reverses the columns: the last dimension of a (3, S, S) image, e.g. image.flip(-1)"),
    (lambda x: x.flip(0), "the color channels are reversed (RGB became BGR): dim 0 was flipped",
     "images here are channels-first (3, S, S); the columns are dim 2 (or -1), not dim 0"),
    (lambda x: x.flip(-1, -2), "the image is flipped both ways (a 180-degree rotation)",
     "reverse only the last dimension (columns); the rows stay in place"),
    (lambda x: x.transpose(-1, -2), "the image is transposed (rows and columns swapped), not mirrored",
     "a mirror keeps every pixel in its row and reverses the order of the columns: image.flip(-1)"),
    (lambda x: x.flip(-1).flip(0), "the columns are reversed but so are the color channels",
     "flip dim -1 only; dim 0 holds R, G, B"),
)


def _diagnose_image(case: str, image: torch.Tensor, received: object) -> None:
    expected = image.flip(-1)
    if isinstance(received, torch.Tensor) and tuple(received.shape) == tuple(image.shape):
        if equal(received.detach().to(image.dtype).cpu(), expected):
            return
        for make, what, hint in _IMAGE_MISTAKES:
            if equal(received.detach().to(image.dtype).cpu(), make(image)):
                fail(case, "the image mirrored left-right: column j moves to column S-1-j", what, hint)
        worst = (received.detach().double().cpu() - expected.double()).abs().max().item()
        fail(case, "the image mirrored left-right (exactly the same pixel values, in reversed column order)",
             f"{short(received)}, largest difference {worst:.3g} from the mirror image",
             "only move pixels: no noise, no rescaling, no clamping; image.flip(-1) is one correct way")
    channels_last = tuple(image.permute(1, 2, 0).shape)
    if isinstance(received, torch.Tensor) and tuple(received.shape) == channels_last:
        fail(case, f"an image of shape {tuple(image.shape)} (channels first)", f"shape {tuple(received.shape)}",
             "you returned a channels-last image; keep the (3, S, S) layout the function received")
    expect_tensor(case, received, tuple(image.shape), image.dtype)


def _diagnose_position(case: str, position: str, received: object) -> None:
    expected = _MIRROR[position]
    if received == expected:
        return
    if not isinstance(received, str) or received not in POSITIONS:
        fail(case, f"position {expected!r} (a string, one of {POSITIONS})", short(received),
             "return the new position label as a string, e.g. 'top-right'")
    if position == "center":
        hint = "a shape in the center stays in the center when the image is mirrored"
    elif received == position:
        hint = (f"the label was not swapped: after the flip the shape that was {position} is {expected}, "
                "so a model trained on it would learn wrong answers to 'where is it ?'")
    elif received == _UPSIDE_DOWN[position]:
        hint = "you swapped top and bottom; a left-right mirror swaps left and right and keeps top/bottom"
    else:
        hint = "swap 'left' and 'right' in the label and keep 'top'/'bottom'; 'center' stays 'center'"
    fail(case, f"{position!r} -> {expected!r}", f"{position!r} -> {received!r}", hint)


@register
def expect_flip(case: str, hflip_example, image: torch.Tensor, position: str,
                expected_image: torch.Tensor | None = None, expected_position: str | None = None) -> None:
    """Call hflip_example(image, position) on a copy and fail with a specific message unless it mirrors both.

    expected_image and expected_position, when given, are checked as well (hidden tests pass literal values).
    """
    original = image.clone()
    result = call(case, hflip_example, image, position,
                  hint="hflip_example(image, position) should return (flipped_image, new_position)")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(case, "a pair (flipped_image, new_position)", short(result),
             "return both: `return flipped, new_position`")
    if not equal(image, original):
        fail(case, "the input image left unchanged", "hflip_example changed the image it was given (in place)",
             "build a new tensor (image.flip(-1) does) instead of writing into the input; "
             "the original sample must stay in the dataset")
    flipped, new_position = result
    _diagnose_image(case, original, flipped)
    _diagnose_position(case, position, new_position)
    if expected_image is not None and not equal(flipped.detach().to(expected_image.dtype).cpu(), expected_image):
        fail(case, short(expected_image), short(flipped), "mirror the columns: column j becomes column S-1-j")
    if expected_position is not None and new_position != expected_position:
        fail(case, repr(expected_position), repr(new_position), "swap left and right in the label")


@register
def check_hflip_example(hflip_example) -> None:
    """Random (asymmetric) images of several sizes at every position, and a drawn shape."""
    g = torch.Generator().manual_seed(6)
    for size in (8, 5):
        image = torch.rand(3, size, size, generator=g)  # no symmetry, so every wrong flip shows
        for position in POSITIONS:
            expect_flip(f"a random {tuple(image.shape)} image labelled {position!r}", hflip_example, image, position)
    drawn = draw_shape("blue", "square", "bottom-left", image_size=64, generator=torch.Generator().manual_seed(0))
    expect_flip("a drawn blue square at the bottom left, (3, 64, 64)", hflip_example, drawn, "bottom-left")
    image, position = call("flipping twice", lambda: hflip_example(*hflip_example(drawn, "top-left")))
    if not equal(image.detach().cpu(), drawn) or position != "top-left":
        fail("flipping twice", "the original image and 'top-left'", f"{short(image)}, {position!r}",
             "a mirror applied twice is the identity")
    passed("hflip_example", "mirrors the columns, keeps channels and rows, and swaps left/right in all 5 labels")
