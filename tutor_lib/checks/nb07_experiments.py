"""Checks for notebook 07_experiments: hflip_example (a label-preserving flip) and paired_bootstrap."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..augment import HFLIP_POSITION
from ..data import draw_shape
from ..vocab import POSITIONS
from ._common import call, equal, expect_tensor, fail, passed, quiet, register, short

__all__ = ["check_hflip_example", "expect_flip", "check_paired_bootstrap"]

# Where a shape goes when the image is mirrored left-right: a copy taken before any student code runs.
_MIRROR = dict(HFLIP_POSITION)
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


# -- paired_bootstrap ---------------------------------------------------------------------------

# NumPy functions the check computes its references with, bound before any student code runs.
_default_rng, _percentile, _median = np.random.default_rng, np.percentile, np.median
_asarray, _array_equal = np.asarray, np.array_equal

# Per-seed accuracies of two arms on 8 seeds: arm a is about 4 points better on every seed, while
# the seeds themselves range from 0.62 to 0.97, so pairing matters: resampling a and b
# independently gives an interval several times wider than the paired one.
_A = (0.70, 0.93, 0.66, 0.99, 0.80, 0.88, 0.73, 0.95)
_B = (0.65, 0.90, 0.62, 0.97, 0.74, 0.85, 0.71, 0.89)
# A second, skewed case (one seed far from the others) with a negative mean difference.
_C = (0.40, 0.52, 0.47, 0.45, 0.50, 0.10)
_D = (0.44, 0.55, 0.49, 0.50, 0.51, 0.36)
_REFERENCE_BOOT = 200_000  # the reference interval, with Monte Carlo error far below the tolerance


def _resampled_means(d: np.ndarray, n_boot: int, seed: int, pairs: bool = True, b: np.ndarray | None = None) -> np.ndarray:
    rng = _default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    if pairs:
        return d[idx].mean(1)
    other = rng.integers(0, len(d), size=(n_boot, len(d)))  # a and b resampled independently
    return (d[idx] + b[idx]).mean(1) - b[other].mean(1)  # d + b is a


@functools.lru_cache(maxsize=8)
def _references(d: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, tuple, tuple]:
    """The paired 95 % interval, the paired 90 % one and the unpaired 95 % one, from many resamples."""
    d_arr, b_arr = _asarray(d), _asarray(b)
    means = _resampled_means(d_arr, _REFERENCE_BOOT, 12345)
    low, high = (float(v) for v in _percentile(means, [2.5, 97.5]))
    ninety = tuple(float(v) for v in _percentile(means, [5, 95]))
    unpaired = _percentile(_resampled_means(d_arr, _REFERENCE_BOOT // 4, 1, pairs=False, b=b_arr), [2.5, 97.5])
    return low, high, ninety, tuple(float(v) for v in unpaired)


def _numbers(case: str, result: object) -> tuple[float, float, float]:
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        fail(case, "a tuple (mean_difference, low, high)", short(result),
             "return all three numbers: `return mean, low, high`")
    try:
        values = tuple(float(v) for v in result)
    except (TypeError, ValueError):
        fail(case, "three numbers (mean_difference, low, high)", short(result),
             "return plain numbers (floats), e.g. float(np.mean(d)), not arrays or strings")
    if not all(math.isfinite(v) for v in values):
        fail(case, "three finite numbers", short(result), "no NaN or inf: check for a division by zero or empty data")
    return values


def _expect_interval(case: str, fn, a, b, n_boot: int = 4000, seed: int = 0) -> None:
    """Call fn(a, b, n_boot, seed) and compare with the reference mean and 95 % paired percentile interval."""
    a_arr, b_arr = _asarray(a, dtype=float), _asarray(b, dtype=float)
    d = a_arr - b_arr
    a_copy, b_copy = a_arr.copy(), b_arr.copy()
    mean, low, high = _numbers(case, call(case, fn, a, b, n_boot, seed,
                                          hint="paired_bootstrap(a, b, n_boot, seed) -> (mean, low, high)"))
    if isinstance(a, np.ndarray) and not (_array_equal(a, a_copy) and _array_equal(b, b_copy)):
        fail(case, "a and b left unchanged", "paired_bootstrap changed the arrays it was given (in place)",
             "compute d = a - b into a new array; `a -= b` writes into the caller's data")
    true_mean = float(d.mean())
    if not math.isclose(mean, true_mean, abs_tol=1e-9):
        if math.isclose(mean, -true_mean, abs_tol=1e-9):
            hint = "the difference is a - b (the first arm minus the second), not b - a"
        elif math.isclose(mean, float(_median(d)), abs_tol=1e-9):
            hint = "the summary is the mean of the differences, not their median"
        else:
            hint = "the first number is the plain mean of the paired differences a[i] - b[i], over all pairs"
        fail(case, f"mean difference {true_mean:.6f}", f"{mean:.6f}", hint)
    if low > high:
        fail(case, "low <= high", f"low {low:.4f} > high {high:.4f}", "return (mean, low, high) in that order")
    want_low, want_high, want_90, unpaired = _references(tuple(d.tolist()), tuple(b_arr.tolist()))
    width = want_high - want_low
    tolerance = 0.1 * width  # bootstrap noise of a correct 4000-resample interval stays well inside this
    if abs(low - want_low) <= tolerance and abs(high - want_high) <= tolerance:
        return
    received = f"({mean:.4f}, {low:.4f}, {high:.4f})"
    expected = f"about ({true_mean:.4f}, {want_low:.4f}, {want_high:.4f}), each bound within {tolerance:.4f}"
    if math.isclose(low, high, abs_tol=1e-12):
        fail(case, expected, received, "every resample has the same mean: draw the pairs WITH replacement "
             "(rng.integers(0, n, size=(n_boot, n)) or rng.choice(n, size=n, replace=True)), not a permutation")
    def near(lo: float, hi: float) -> bool:  # within a tenth of that interval's own width
        slack = max(tolerance, 0.1 * (hi - lo))
        return abs(low - lo) <= slack and abs(high - hi) <= slack

    sd = float(d.std(ddof=1))
    diagnoses = [
        (_percentile(d, [2.5, 97.5]), "these are percentiles of the differences themselves; bootstrap their MEAN: "
                                      "resample the pairs n_boot times and take the percentiles of the n_boot means"),
        (want_90, "this is a 90 % interval; a 95 % interval keeps the 2.5th and 97.5th percentiles"),
        ((true_mean - 1.96 * sd, true_mean + 1.96 * sd), "mean +- 1.96 standard deviations of the differences "
                                                         "describes one seed's spread, not the mean's; bootstrap the mean"),
        (unpaired, "this interval is as wide as if a and b were resampled independently: the seeds are pairs, "
                   "so draw one set of indices per resample and use it for both (or resample d = a - b)"),
    ]
    if high < want_low and high - low < 0.5 * width:
        fail(case, expected, received, "both bounds sit below the 2.5th percentile: np.percentile takes percents "
             "(2.5, 97.5), np.quantile fractions (0.025, 0.975)")
    for (lo, hi), hint in diagnoses:
        if near(float(lo), float(hi)):
            fail(case, expected, received, hint)
    if high - low > 1.5 * width:
        hint = ("your interval is much wider than the paired bootstrap's: resample the pairs (the same indices "
                "for a and b), and take percentiles of the resampled MEANS")
    elif high - low < 0.6 * width:
        hint = "your interval is too narrow: a 95 % interval spans the 2.5th to the 97.5th percentile of the means"
    else:
        hint = ("resample n pairs with replacement n_boot times, take each resample's mean difference, "
                "and return the 2.5th and 97.5th percentiles of those means")
    fail(case, expected, received, hint)


def _expect_value_error(case: str, fn, a, b, why: str) -> None:
    try:
        with quiet():
            result = fn(a, b, 100, 0)
    except ValueError:
        return
    except NotImplementedError:
        fail(case, "ValueError", "NotImplementedError: the function is still the stub", "write the function first")
    except Exception as error:  # noqa: BLE001 (any other error is the wrong kind)
        fail(case, "ValueError", f"{type(error).__name__}: {error}", f"raise ValueError with a clear message: {why}")
    fail(case, "ValueError", f"returned {short(result)}", f"check the input first and raise ValueError: {why}")


@register
def check_paired_bootstrap(paired_bootstrap) -> None:
    """Mean and interval against a 200 000-resample reference, the seed, n_boot, and bad input."""
    _expect_interval("8 paired seeds (lists), a better on every seed", paired_bootstrap, list(_A), list(_B))
    _expect_interval("6 paired seeds (NumPy arrays), one far-off seed, a worse", paired_bootstrap,
                     np.array(_C), np.array(_D), seed=3)
    case = "the same seed twice"
    first = _numbers(case, call(case, paired_bootstrap, list(_A), list(_B), 500, 7))
    again = _numbers(case, call(case, paired_bootstrap, list(_A), list(_B), 500, 7))
    if first != again:
        fail(case, "the same interval both times", f"{first} then {again}",
             "draw from rng = np.random.default_rng(seed), not from np.random's global state")
    case = "seeds 1 and 2"
    one = _numbers(case, call(case, paired_bootstrap, list(_A), list(_B), 200, 1))
    two = _numbers(case, call(case, paired_bootstrap, list(_A), list(_B), 200, 2))
    if one[1:] == two[1:]:
        fail(case, "different resamples, so (slightly) different intervals", f"{one} both times",
             "the resamples must come from np.random.default_rng(seed): use the seed you are given")
    case = "n_boot=1: a single resample"
    single = _numbers(case, call(case, paired_bootstrap, list(_A), list(_B), 1, 0))
    if not math.isclose(single[1], single[2], abs_tol=1e-12):
        fail(case, "low == high (the percentiles of one resampled mean)", f"{single}",
             "draw exactly n_boot resamples; do not use a fixed number")
    _expect_value_error("a has 8 values, b has 1", paired_bootstrap, list(_A), [0.5],
                        "a and b must hold one value per seed each (equal lengths); NumPy would broadcast")
    _expect_value_error("a single pair", paired_bootstrap, [0.7], [0.6], "at least 2 pairs are needed to resample")
    passed("paired_bootstrap", "the paired mean and its 95 % bootstrap interval, seeded, with n_boot resamples; "
                               "bad input raises ValueError")
