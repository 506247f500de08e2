"""Checks for notebook 02_data: draw_shape and make_qa.

draw_shape is compared pixel for pixel with the seed's geometry when noise_std=0 (every one of
the 30 configurations, at three image sizes); the noise is checked separately, by its
statistics and by whether the given generator makes it repeatable, so any correct way of
drawing Gaussian noise passes. make_qa is compared with the vocabulary's token ids for all
30 x 3 (configuration, question type) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..data import COLOR_RGB, QUESTIONS, shape_centers
from ..vocab import COLORS, END, POSITIONS, QUESTION_TYPES, SHAPES, START, VOCAB
from . import trusted
from ._common import allclose, call, equal, fail, passed, register, short
from ._stages import words

__all__ = ["check_draw_shape", "check_make_qa"]


# -- draw_shape -----------------------------------------------------------------------------------

def _geometry(color: str, shape: str, position: str, size: int, *, strict: bool = True, swap: bool = False,
              float_radius: bool = False, float_centers: bool = False, floor_first: bool = False) -> torch.Tensor:
    """The seed's noise-free drawing (3, S, S), or one of the typical variations of it."""
    row, col = (float(v) for v in shape_centers(size)[POSITIONS.index(position)])
    if floor_first:  # 3 * (S // 4) instead of 3 * S // 4 for the far rows and columns
        row, col = (3 * (size // 4) if v == 3 * size // 4 else v for v in (row, col))
    if float_centers:
        fractions = {"top-left": (1 / 4, 1 / 4), "top-right": (1 / 4, 3 / 4), "bottom-left": (3 / 4, 1 / 4),
                     "bottom-right": (3 / 4, 3 / 4), "center": (1 / 2, 1 / 2)}[position]
        row, col = fractions[0] * size, fractions[1] * size
    if swap:
        row, col = col, row
    r = size / 6 if float_radius else float(size // 6)
    ys = trusted.arange(size, dtype=torch.float64).view(size, 1)
    xs = trusted.arange(size, dtype=torch.float64).view(1, size)
    if shape == "circle":
        d2 = (xs - col) ** 2 + (ys - row) ** 2
        mask = d2 < r**2 if strict else d2 <= r**2
    else:
        dx, dy = (xs - col).abs(), (ys - row).abs()
        mask = (dx < r) & (dy < r) if strict else (dx <= r) & (dy <= r)
    rgb = trusted.tensor(COLOR_RGB[color], dtype=torch.float32).view(3, 1, 1)
    return mask.float() * rgb  # (3, S, S)


def _first_difference(received: torch.Tensor, expected: torch.Tensor) -> str:
    differ = (received - expected).abs() > 1e-6
    c, y, x = (int(v) for v in differ.nonzero()[0])
    return (f"{int(differ.sum())} of {differ.numel()} values differ; first at channel {c}, row {y}, column {x}: "
            f"expected {float(expected[c, y, x]):.3f}, received {float(received[c, y, x]):.3f}")


def _image(case: str, fn, size: int, *args, **kwargs) -> torch.Tensor:
    image = call(case, fn, *args, image_size=size, **kwargs,
                 hint="draw_shape(color, shape, position, image_size=64, noise_std=0.05, generator=None)")
    if not isinstance(image, torch.Tensor):
        fail(case, f"a torch.Tensor of shape (3, {size}, {size})", f"{type(image).__name__}: {short(image)}",
             "build the image with torch, e.g. torch.zeros(3, image_size, image_size)")
    if tuple(image.shape) == (size, size, 3):
        fail(case, f"shape (3, {size}, {size}): channels first", f"shape {tuple(image.shape)}: channels last",
             "PyTorch images are (C, H, W); only matplotlib wants (H, W, C), and plots permute for it")
    if tuple(image.shape) != (3, size, size):
        fail(case, f"shape (3, {size}, {size})", f"shape {tuple(image.shape)}",
             "the image is 3 x image_size x image_size: use the image_size argument, not 64")
    if not image.is_floating_point():
        fail(case, "a floating-point tensor with values in [0, 1]", f"dtype {image.dtype}",
             "colors are fractions such as (1.0, 0.1, 0.1), not 0-255 integers")
    return image.detach().float().cpu()


def _geometry_case(fn, color: str, shape: str, position: str, size: int) -> None:
    case = f"draw_shape({color!r}, {shape!r}, {position!r}, image_size={size}, noise_std=0)"
    image = _image(case, fn, size, color, shape, position, noise_std=0.0)
    expected = _geometry(color, shape, position, size)
    if allclose(image, expected, atol=1e-6):
        return
    variants = {
        "x and y are swapped: rows are y (top to bottom), columns are x; 'top-right' is row S//4, column 3*S//4":
            dict(swap=True),
        "the edge is included: a pixel belongs to the shape only when strictly inside (<, not <=)": dict(strict=False),
        "the radius is image_size // 6, an integer": dict(float_radius=True),
        "centers are integers: S // 4, S // 2 and 3 * S // 4": dict(float_centers=True),
        "the far center is 3 * S // 4, i.e. (3 * S) // 4: multiply before dividing, not 3 * (S // 4)":
            dict(floor_first=True),
    }
    hint = "compare with the geometry in the text: radius S // 6, centers at S // 4, S // 2, 3 * S // 4, strict <"
    for text, options in variants.items():
        if allclose(image, _geometry(color, shape, position, size, **options), atol=1e-6):
            hint = text
            break
    else:
        lit, lit_expected = image.abs().sum(0) > 0, expected.sum(0) > 0
        if equal(lit, lit_expected):
            hint = f"the shape is in the right place but its color differs: {color} is {COLOR_RGB[color]} and the background 0"
    fail(case, "the seed's drawing, exactly", _first_difference(image, expected), hint)


def _noise_stats(case: str, image: torch.Tensor, clean: torch.Tensor, noise_std: float) -> None:
    if float(image.min()) < 0 or float(image.max()) > 1:
        fail(case, "values in [0, 1]", f"values from {float(image.min()):.3f} to {float(image.max()):.3f}",
             "clamp after adding the noise: image.clamp(0, 1)")
    inside = (clean > 0.05) & (clean < 0.95)  # color values 0.1 and 0.8: noise never reaches 0 or 1 there
    residual = (image - clean)[inside]
    std, mean = float(residual.std()), float(residual.mean())
    if not 0.8 * noise_std <= std <= 1.2 * noise_std or abs(mean) > 0.25 * noise_std:
        fail(case, f"Gaussian noise of mean 0 and std {noise_std} on every pixel",
             f"noise of mean {mean:.4f} and std {std:.4f} inside the shape",
             "add noise_std * (standard normal noise) to every pixel, before clamping; use the noise_std argument")
    background = image[clean == 0]
    above = float((background > 0).float().mean())
    if not 0.35 <= above <= 0.65:
        fail(case, "noise on the background too: about half of its pixels above 0 after clamping",
             f"{above:.0%} of the background pixels above 0", "add the noise to the whole image, not only to the shape")


@register
def check_draw_shape(draw_shape) -> None:
    """Check draw_shape(color, shape, position, image_size=64, noise_std=0.05, generator=None) -> (3, S, S)."""
    for color in COLORS:
        for shape in SHAPES:
            for position in POSITIONS:
                _geometry_case(draw_shape, color, shape, position, 64)
    other_sizes = [(48, ("blue", "square", "top-right")), (48, ("green", "circle", "bottom-left")),
                   (30, ("red", "circle", "top-right")), (30, ("blue", "square", "bottom-right")),
                   (30, ("green", "circle", "center"))]
    for size, config in other_sizes:
        _geometry_case(draw_shape, *config, size)

    case = "draw_shape('green', 'square', 'top-left', noise_std=0.02, generator=torch.Generator().manual_seed(7))"
    noisy = _image(case, draw_shape, 64, "green", "square", "top-left", noise_std=0.02,
                   generator=torch.Generator().manual_seed(7))
    clean = _geometry("green", "square", "top-left", 64)
    _noise_stats(case, noisy, clean, 0.02)

    case = "draw_shape('green', 'circle', 'center', generator=torch.Generator().manual_seed(3)): default noise_std 0.05"
    default = _image(case, draw_shape, 64, "green", "circle", "center", generator=torch.Generator().manual_seed(3))
    _noise_stats(case, default, _geometry("green", "circle", "center", 64), 0.05)

    case = "two calls with generators seeded alike (7 and 7)"
    again = _image(case, draw_shape, 64, "green", "square", "top-left", noise_std=0.02,
                   generator=torch.Generator().manual_seed(7))
    if not equal(again, noisy):
        fail(case, "the same image twice", f"images that differ by up to {float((again - noisy).abs().max()):.3f}",
             "draw the noise from the given generator: torch.randn(shape, generator=generator); randn_like ignores it")
    case = "two calls with generators seeded differently (7 and 8)"
    other = _image(case, draw_shape, 64, "green", "square", "top-left", noise_std=0.02,
                   generator=torch.Generator().manual_seed(8))
    if equal(other, noisy):
        fail(case, "different noise", "the same image", "do not reseed inside draw_shape; use the generator you are given")
    passed("draw_shape", "all 30 configurations match the seed's geometry at sizes 64, 48 and 30; "
           "noise has the right spread, stays in [0, 1] and follows the generator")


# -- make_qa --------------------------------------------------------------------------------------

_KEYS = ("question_tokens", "answer_tokens", "caption_tokens")


def _expected_qa(color: str, shape: str, position: str, question_type: str) -> dict[str, list[int]]:
    answer = {"color": color, "shape": shape, "position": position}[question_type]
    return {"question_tokens": [VOCAB[w] for w in QUESTIONS[question_type].split()],
            "answer_tokens": [VOCAB[answer]],
            "caption_tokens": [VOCAB[color], VOCAB[shape]]}


def _qa_hint(key: str, received: list[int], expected: list[int], question_type: str) -> str:
    if START in received or END in received:
        return "no <start> or <end> here: the batch builders add them (notebooks 05 and 06)"
    if key == "caption_tokens" and received == expected[::-1]:
        return "the caption is '<color> <shape>', color first, e.g. 'red circle'"
    if key == "answer_tokens":
        return f"a {question_type} question is answered with the {question_type}"
    return f"the {question_type} question is {QUESTIONS[question_type]!r}; look each word up in VOCAB"


@register
def check_make_qa(make_qa) -> None:
    """Check make_qa(color, shape, position, question_type) -> dict of token-id lists."""
    count = 0
    for color in COLORS:
        for shape in SHAPES:
            for position in POSITIONS:
                for question_type in QUESTION_TYPES:
                    case = f"make_qa({color!r}, {shape!r}, {position!r}, {question_type!r})"
                    record = call(case, make_qa, color, shape, position, question_type,
                                  hint="every word of the question, the answer and the caption is in VOCAB")
                    if not isinstance(record, Mapping):
                        fail(case, "a dict", f"{type(record).__name__}: {short(record)}",
                             "return {'question_tokens': [...], 'answer_tokens': [...], 'caption_tokens': [...]}")
                    missing = [k for k in _KEYS if k not in record]
                    if missing:
                        fail(case, f"keys {list(_KEYS)}", f"keys {list(record)}",
                             f"the later notebooks read {missing[0]!r}; keep the seed's key names")
                    expected = _expected_qa(color, shape, position, question_type)
                    for key in _KEYS:
                        value = record[key]
                        where = f"{case}[{key!r}]"
                        if isinstance(value, torch.Tensor):
                            fail(where, f"a list of ints {expected[key]}", short(value),
                                 "return plain Python lists; the batch builders turn them into tensors")
                        if isinstance(value, int) and not isinstance(value, bool):
                            fail(where, f"a list {expected[key]}", f"the int {value}",
                                 "even a one-word answer is a list of token ids, e.g. [10]")
                        if not isinstance(value, list) or not all(type(t) is int for t in value):
                            are_words = isinstance(value, list) and value and all(isinstance(t, str) for t in value)
                            fail(where, f"a list of ints {expected[key]}", short(value),
                                 "token ids, not words: look each word up, VOCAB['red'] is 10" if are_words
                                 else "a list of Python ints (token ids)")
                        if value != expected[key]:
                            fail(where, f"{expected[key]} ({words(expected[key])})",
                                 f"{value} ({words(value)})", _qa_hint(key, value, expected[key], question_type))
                    count += 1
    passed("make_qa", f"question, answer and caption token ids right for all {count} "
           "(configuration, question type) pairs")
