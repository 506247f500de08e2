"""Checks for notebook 07_experiments: hflip_example (a label-preserving flip) and paired_bootstrap.

A failure is diagnosed by matching (see _mistakes.py), never guessed. hflip_example: a catalogue mistake
matches when it gives exactly the student's outcome (result, and the input after the call, or the error) on
the failing case and on an asymmetric image at all 5 positions, so a one-case coincidence names nothing.
paired_bootstrap: a mistake matches on the failing case's inputs, the mean exactly and the bounds within
resampling noise; the seed cases compare with np.random's global state pinned, so only reproducible
outcomes are matched.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..augment import HFLIP_POSITION
from ..data import draw_shape
from ..vocab import POSITIONS
from ._common import call, equal, fail, passed, quiet, raised, register, short
from ._mistakes import Mistake, catalogue, matching

__all__ = ["check_hflip_example", "expect_flip", "check_paired_bootstrap"]

# Where a shape goes when the image is mirrored left-right: a copy taken before any student code runs.
_MIRROR = dict(HFLIP_POSITION)
_UPSIDE_DOWN = {"top-left": "bottom-left", "top-right": "bottom-right", "bottom-left": "top-left",
                "bottom-right": "top-right", "center": "center"}
_HALF_TURN = {"top-left": "bottom-right", "top-right": "bottom-left", "bottom-left": "top-right",
              "bottom-right": "top-left", "center": "center"}


# -- hflip_example: the catalogue, the reference with one mistake each -----------------------------------

def _flip(image, position, *, dims=(-1,), labels=_MIRROR):
    """The reference with the pixels reversed along `dims` and the label looked up in `labels`."""
    return image.flip(dims) if dims else image, labels[position]


def _replaced_twice(image, position):
    return image.flip(-1), position.replace("left", "right").replace("right", "left")  # right -> left again


def _split_words(image, position):
    vertical, horizontal = position.split("-")  # 'center' has no '-'
    return image.flip(-1), vertical + "-" + ("right" if horizontal == "left" else "left")


def _column_zero_dropped(image, position):
    return image[:, :, torch.arange(image.shape[-1] - 1, 0, -1)], _MIRROR[position]


def _in_place(image, position):
    image.copy_(image.flip(-1))
    return image, _MIRROR[position]


P = functools.partial
FLIP_MISTAKES = catalogue(
    "hflip_example",
    Mistake("label not swapped", P(_flip, labels={p: p for p in POSITIONS}),
            "mirror the label too: after the flip the shape that was on the left is on the right, so a model "
            "trained on the unswapped label would learn wrong answers to 'where is it ?'"),
    Mistake("image not flipped", P(_flip, dims=()),
            "flip the pixels too, not only the label: reverse the last dimension, e.g. image.flip(-1)"),
    Mistake("rows flipped (upside down), not columns", P(_flip, dims=(-2,)),
            "a horizontal flip reverses the columns: the last dimension of a (3, S, S) image, e.g. image.flip(-1)"),
    Mistake("color channels flipped (dim 0), not columns", P(_flip, dims=(0,)),
            "images here are channels-first (3, S, S); the columns are dim 2 (or -1), not dim 0"),
    Mistake("columns and color channels both flipped", P(_flip, dims=(0, -1)),
            "flip dim -1 only; dim 0 holds R, G, B"),
    Mistake("flipped both ways (a 180-degree rotation)", P(_flip, dims=(-2, -1)),
            "reverse only the last dimension (columns); the rows stay in place"),
    Mistake("transposed, not mirrored", lambda image, position: (image.transpose(-1, -2), _MIRROR[position]),
            "a mirror keeps every pixel in its row and reverses the order of the columns: image.flip(-1)"),
    Mistake("column 0 dropped (index range stops at 1)", _column_zero_dropped,
            "the reversed columns are S-1, S-2, ..., 0: torch.arange(S - 1, -1, -1), or simply image.flip(-1)"),
    Mistake("top and bottom swapped in the label, not left and right", P(_flip, labels=_UPSIDE_DOWN),
            "a left-right mirror swaps 'left' and 'right' and keeps 'top'/'bottom'"),
    Mistake("label turned 180 degrees (top and bottom swapped too)", P(_flip, labels=_HALF_TURN),
            "a left-right mirror swaps only 'left' and 'right'; 'top' stays 'top' and 'bottom' stays 'bottom'"),
    Mistake("str.replace twice: 'right' turned back into 'left'", _replaced_twice,
            "two replace calls undo each other (left -> right -> left); swap through a dict such as "
            "{'left': 'right', 'right': 'left'} or a placeholder word"),
    Mistake("'center' split on '-' (it has none)", _split_words,
            "'center' has no '-': handle it first (it stays 'center'), then swap left and right"),
    Mistake("channels-last image returned", lambda image, position: (image.flip(-1).permute(1, 2, 0),
                                                                     _MIRROR[position]),
            "keep the (3, S, S) layout the function received: flip dim -1 without permuting"),
    Mistake("only the new position returned", lambda image, position: _MIRROR[position],
            "return both: `return flipped, new_position`"),
    Mistake("(position, image) returned in that order", lambda image, position: _flip(image, position)[::-1],
            "return the image first, then the position: `return flipped, new_position`"),
    Mistake("the new position's index, not its name", lambda image, position: (
        image.flip(-1), POSITIONS.index(_MIRROR[position])),
            "return the new position label as a string, e.g. 'top-right'"),
    Mistake("a NumPy array, not a tensor", lambda image, position: (
        np.flip(image.numpy(), -1).copy(), _MIRROR[position]),
            "return a torch tensor: image.flip(-1) keeps it one (or torch.from_numpy(array.copy()))"),
    Mistake("input image flipped in place", _in_place,
            "build a new tensor (image.flip(-1) does) instead of writing into the input; "
            "the original sample must stay in the dataset"),
)

_PROBE_IMAGE = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(70))  # asymmetric: no two flips agree


def _flip_outcome(fn, image: torch.Tensor, position: str) -> tuple:
    """What fn(image, position) does on a copy: its result and the image after the call, or the error it raises."""
    given = image.clone()
    try:
        with quiet():
            result = fn(given, position)
    except Exception as error:  # noqa: BLE001 - an exception is an outcome to compare
        return ("raises", raised(error))
    return ("value", _plain(result), given)


def _plain(value: object) -> object:
    if isinstance(value, (tuple, list)):
        return ("sequence", tuple(_plain(v) for v in value))
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().cpu().double())
    if isinstance(value, np.ndarray):
        return ("ndarray", torch.from_numpy(np.ascontiguousarray(value)).double())
    if isinstance(value, (str, int, float, bool, type(None))):
        return ("other", type(value).__name__, value)
    return ("other", type(value).__name__, repr(value))


def _same_plain(x: object, y: object) -> bool:
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape
                and bool(equal(x, y)))
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(_same_plain(a, b) for a, b in zip(x, y))
    return x == y


def _flip_fingerprint(fn, image: torch.Tensor, position: str) -> tuple:
    """fn's outcome on the failing case and on an asymmetric image at every position."""
    return (_flip_outcome(fn, image, position), *(_flip_outcome(fn, _PROBE_IMAGE, p) for p in POSITIONS))


def _flip_matches(fn, image: torch.Tensor, position: str) -> list[Mistake]:
    received = _flip_fingerprint(fn, image, position)
    return matching(FLIP_MISTAKES, lambda mistake: _flip_fingerprint(mistake, image, position), received,
                    _same_plain)


# Exact observations about a received image (each an image transform, and what it looks like).
_IMAGE_LOOKS = (
    (lambda x: x, "the image is unchanged"),
    (lambda x: x.flip(-2), "the image is flipped upside down (rows, dim 1, reversed)"),
    (lambda x: x.flip(0), "the color channels are reversed (dim 0)"),
    (lambda x: x.flip(-1, -2), "the image is flipped both ways (a 180-degree rotation)"),
    (lambda x: x.transpose(-1, -2), "the image is transposed (rows and columns swapped)"),
    (lambda x: x.flip(-1).flip(0), "the columns are reversed and so are the color channels"),
)


def _diagnose_image(case: str, image: torch.Tensor, received: object, diagnose) -> None:
    expected = image.flip(-1)
    if isinstance(received, torch.Tensor) and tuple(received.shape) == tuple(image.shape):
        got = received.detach().to(image.dtype).cpu()
        if equal(got, expected):
            return
        looks = next((what for make, what in _IMAGE_LOOKS if equal(got, make(image))), None)
        if looks is None:
            worst = (received.detach().double().cpu() - expected.double()).abs().max().item()
            looks = f"{short(received)}, largest difference {worst:.3g} from the mirror image"
        fail(case, "the image mirrored left-right: column j moves to column S-1-j, the same pixel values", looks,
             "a horizontal flip only moves pixels: each row keeps its pixels, in reversed column order, and the "
             "channels stay (R, G, B); image.flip(-1) is one correct way", diagnose())
    if isinstance(received, torch.Tensor) and tuple(received.shape) == tuple(image.permute(1, 2, 0).shape):
        fail(case, f"an image of shape {tuple(image.shape)} (channels first)",
             f"shape {tuple(received.shape)} (channels last)", "keep the (3, S, S) layout the function received",
             diagnose())
    if not isinstance(received, torch.Tensor):
        fail(case, "a torch.Tensor", f"{type(received).__name__}: {short(received)}",
             "the first item of the pair is the flipped image, a tensor of the input's shape", diagnose())
    if tuple(received.shape) != tuple(image.shape):
        fail(case, f"shape {tuple(image.shape)}", f"shape {tuple(received.shape)}",
             "the flipped image has the input's shape: every column moves, none is added or dropped", diagnose())
    if received.dtype != image.dtype:
        fail(case, f"dtype {image.dtype}", f"dtype {received.dtype}", "keep the input's dtype", diagnose())


def _label_map(fn, image: torch.Tensor) -> str:
    """The student's label for each position (an observation shown next to a wrong label), or '' if unavailable."""
    pairs = []
    for p in POSITIONS:
        outcome = _flip_outcome(fn, image, p)
        if outcome[0] != "value" or outcome[1][0] != "sequence" or len(outcome[1][1]) != 2:
            return ""
        label = outcome[1][1][1]
        pairs.append(f"{p} -> {label[2]}")
    return "; for all 5: " + ", ".join(pairs)


def _diagnose_position(case: str, fn, image: torch.Tensor, position: str, received: object, diagnose) -> None:
    expected = _MIRROR[position]
    if received == expected:
        return
    if not isinstance(received, str) or received not in POSITIONS:
        fail(case, f"position {expected!r} (a string, one of {POSITIONS})", short(received),
             "the second item of the pair is the new position label, a string such as 'top-right'", diagnose())
    fail(case, f"{position!r} -> {expected!r}", f"{position!r} -> {received!r}" + _label_map(fn, image),
         "a left-right mirror swaps 'left' and 'right' in the label and keeps 'top'/'bottom'; "
         "'center' stays 'center'", diagnose())


@register
def expect_flip(case: str, hflip_example, image: torch.Tensor, position: str,
                expected_image: torch.Tensor | None = None, expected_position: str | None = None) -> None:
    """Call hflip_example(image, position) on a copy and fail with a specific message unless it mirrors both.

    expected_image and expected_position, when given, are checked as well (hidden tests pass literal values).
    """
    original = image.clone()
    diagnose = functools.partial(_flip_matches, hflip_example, original, position)  # run only when a case fails
    try:
        with quiet():
            result = hflip_example(image, position)
    except NotImplementedError:
        call(case, hflip_example, image, position)  # the stub's own message
    except Exception as error:  # noqa: BLE001 - student code; a catalogue mistake may raise the same error
        fail(case, "no exception", raised(error),
             "hflip_example(image, position) should return (flipped_image, new_position)", diagnose())
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(case, "a pair (flipped_image, new_position)", short(result),
             "return both: `return flipped, new_position`", diagnose())
    if not equal(image, original):
        fail(case, "the input image left unchanged", "hflip_example changed the image it was given (in place)",
             "build a new tensor (image.flip(-1) does) instead of writing into the input; "
             "the original sample must stay in the dataset", diagnose())
    flipped, new_position = result
    _diagnose_image(case, original, flipped, diagnose)
    _diagnose_position(case, hflip_example, original, position, new_position, diagnose)
    if expected_image is not None and not equal(flipped.detach().to(expected_image.dtype).cpu(), expected_image):
        fail(case, short(expected_image), short(flipped), "mirror the columns: column j becomes column S-1-j",
             diagnose())
    if expected_position is not None and new_position != expected_position:
        fail(case, repr(expected_position), repr(new_position), "swap left and right in the label", diagnose())


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
             "a mirror applied twice is the identity", _flip_matches(hflip_example, drawn, "top-left"))
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
# For the seed cases, values off any grid: with _A and _B (multiples of 0.01) two different draws of
# resamples often give the very same percentiles, so an unseeded generator could pass for a seeded one.
_E = tuple(float(v) for v in 0.6 + 0.3 * np.random.default_rng(2026).random(8))
_F = tuple(float(v) for v in 0.55 + 0.3 * np.random.default_rng(2027).random(8))
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


# -- paired_bootstrap: the catalogue, the reference with one mistake each ---------------------------

def _arms(a, b, check_lengths: bool = True, check_pairs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    a, b = _asarray(a, dtype=float), _asarray(b, dtype=float)
    if check_lengths and a.shape != b.shape:
        raise ValueError(f"a and b must be paired, one value per seed each; got {len(a)} and {len(b)} values")
    if check_pairs and len(a) < 2:
        raise ValueError(f"need at least 2 pairs to bootstrap, got {len(a)}")
    return a, b


def _boot(a, b, n_boot=2000, seed=0, *, q=(2.5, 97.5), sign=1.0, draw="seeded", fixed_boot=None, axis=1,
          statistic="mean", summary="mean", check_lengths=True, check_pairs=True):
    """The reference bootstrap; each keyword but the defaults is one mistake of the catalogue."""
    a, b = _arms(a, b, check_lengths, check_pairs)
    d = sign * (a - b)
    n_boot, n = int(fixed_boot or n_boot), len(d)
    if draw == "seeded":
        idx = _default_rng(seed).integers(0, n, size=(n_boot, n))
    elif draw == "fixed seed":
        idx = _default_rng(0).integers(0, n, size=(n_boot, n))
    elif draw == "global":
        idx = np.random.randint(0, n, size=(n_boot, n))
    else:  # "permutation": without replacement
        rng = _default_rng(seed)
        idx = np.stack([rng.permutation(n) for _ in range(n_boot)])
    resampled = {"mean": np.mean, "sum": np.sum, "median": _median}[statistic](d[idx], axis=axis)
    low, high = _percentile(resampled, list(q))
    return float({"mean": np.mean, "median": _median}[summary](d)), float(low), float(high)


def _unpaired(a, b, n_boot=2000, seed=0):
    a, b = _arms(a, b)
    rng = _default_rng(seed)
    mean_a = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(1)
    mean_b = b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(1)
    low, high = _percentile(mean_a - mean_b, [2.5, 97.5])
    return float((a - b).mean()), float(low), float(high)


def _arm_a_alone(a, b, n_boot=2000, seed=0):
    a, _ = _arms(a, b)
    means = a[_default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))].mean(1)
    low, high = _percentile(means, [2.5, 97.5])
    return float(a.mean()), float(low), float(high)


def _percentiles_of_d(a, b, n_boot=2000, seed=0):
    a, b = _arms(a, b)
    low, high = _percentile(a - b, [2.5, 97.5])
    return float((a - b).mean()), float(low), float(high)


def _normal(a, b, n_boot=2000, seed=0, *, spread="sd"):
    a, b = _arms(a, b)
    d = a - b
    if spread == "sd":  # of the differences: one seed's spread
        half = 1.96 * d.std(ddof=1)
    else:  # one standard error of the bootstrap means: a 68 % interval
        half = d[_default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(1).std()
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def _subtracts_in_place(a, b, n_boot=2000, seed=0):
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("a and b must be paired, with at least 2 pairs")
    if isinstance(a, np.ndarray):
        a -= b  # the caller's array changes
        return _boot(a, np.zeros_like(a), n_boot, seed)
    return _boot(a, b, n_boot, seed)


def _asserts(a, b, n_boot=2000, seed=0):
    assert len(a) == len(b) and len(a) >= 2, "a and b must be paired, with at least 2 pairs"
    return _boot(a, b, n_boot, seed)


B = functools.partial
BOOT_MISTAKES = catalogue(
    "paired_bootstrap",
    Mistake("a and b resampled independently (unpaired)", _unpaired,
            "the seeds are pairs: draw one set of indices per resample and use it for both arms "
            "(or resample d = a - b)"),
    Mistake("percentiles of the differences, not of resampled means", _percentiles_of_d,
            "bootstrap the MEAN: resample the pairs n_boot times and take the percentiles of the n_boot means"),
    Mistake("a 90 % interval (5th and 95th percentiles)", B(_boot, q=(5, 95)),
            "a 95 % interval keeps the 2.5th and 97.5th percentiles"),
    Mistake("fractions given to np.percentile", B(_boot, q=(0.025, 0.975)),
            "np.percentile takes percents (2.5, 97.5); np.quantile takes fractions (0.025, 0.975)"),
    Mistake("b - a, not a - b", B(_boot, sign=-1.0),
            "the difference is a - b (the first arm minus the second), not b - a"),
    Mistake("the median of the differences, not their mean", B(_boot, summary="median"),
            "the first number is the mean of the differences, not their median"),
    Mistake("medians everywhere, not means", B(_boot, summary="median", statistic="median"),
            "the summary and each resample's statistic are the MEAN of the differences"),
    Mistake("sums of the resamples, not their means", B(_boot, statistic="sum"),
            "take each resample's MEAN difference (divide by n), not its sum"),
    Mistake("means over the resamples (axis 0), not within each", B(_boot, axis=0),
            "the indices are (n_boot, n): one resample per row, so average over axis 1 to get n_boot means"),
    Mistake("permutations, not resamples with replacement", B(_boot, draw="permutation"),
            "draw the pairs WITH replacement (rng.integers(0, n, size=(n_boot, n)) or rng.choice(n, size=n, "
            "replace=True)); a permutation has the same mean every time"),
    Mistake("mean +- 1.96 sd of the differences", _normal,
            "1.96 standard deviations of the differences describe one seed's spread, not the mean's; "
            "bootstrap the mean"),
    Mistake("mean +- one standard error (a 68 % interval)", B(_normal, spread="se"),
            "a 95 % interval: the 2.5th and 97.5th percentiles of the resampled means"),
    Mistake("the mean and interval of arm a, not of the difference", _arm_a_alone,
            "bootstrap the paired differences d = a - b, not one arm"),
    Mistake("the global NumPy RNG, seed ignored", B(_boot, draw="global"),
            "draw from rng = np.random.default_rng(seed), not from np.random's global state"),
    Mistake("a fixed seed, the seed argument ignored", B(_boot, draw="fixed seed"),
            "the resamples must come from np.random.default_rng(seed): use the seed you are given"),
    Mistake("n_boot ignored (a fixed number of resamples)", B(_boot, fixed_boot=2000),
            "draw exactly n_boot resamples; do not use a fixed number"),
    Mistake("no check of the lengths", B(_boot, check_lengths=False),
            "raise ValueError when len(a) != len(b): NumPy would broadcast a single b against every a"),
    Mistake("no check for fewer than 2 pairs", B(_boot, check_pairs=False),
            "raise ValueError when there are fewer than 2 pairs: one pair cannot be resampled into an interval"),
    Mistake("assert, not raise ValueError", _asserts,
            "raise ValueError('...') for bad input; an assert raises AssertionError (and is skipped under -O)"),
    Mistake("a subtracted from in place (a -= b)", _subtracts_in_place,
            "compute d = a - b into a new array; `a -= b` writes into the caller's data"),
    Mistake("only (low, high) returned", lambda a, b, n_boot=2000, seed=0: _boot(a, b, n_boot, seed)[1:],
            "return all three numbers: `return mean, low, high`"),
)


def _boot_outcome(fn, *args) -> object:
    """fn(*args) on copies: its result, ("raises", error type) or, for a NumPy input it changed, the input after."""
    copies = [arg.copy() if isinstance(arg, np.ndarray) else list(arg) for arg in args[:2]]
    try:
        with quiet():
            result = fn(*copies, *args[2:])
    except Exception as error:  # noqa: BLE001 - an exception is an outcome to compare
        return ("raises", type(error).__name__)
    changed = [c for c, arg in zip(copies, args) if isinstance(arg, np.ndarray) and not _array_equal(c, arg)]
    return ("changed", changed[0]) if changed else ("value", result)


def _close_to(tolerance: float, relative: float = 0.0):
    """same() for _boot_outcome: equal errors, equal changed inputs, or numbers within tolerance (the mean exactly);
    the bounds of (mean, low, high) may also differ by `relative` times the wider interval's width."""
    def same(x, y) -> bool:
        if x[0] != y[0]:
            return False
        if x[0] == "raises":
            return x[1] == y[1]
        if x[0] == "changed":
            return _array_equal(x[1], y[1])
        try:
            xs, ys = [float(v) for v in x[1]], [float(v) for v in y[1]]
        except (TypeError, ValueError):
            return False
        if len(xs) != len(ys):
            return False
        if len(xs) == 3:  # (mean, low, high): the same mean, bounds within tolerance, widths within a quarter
            width_x, width_y = xs[2] - xs[1], ys[2] - ys[1]
            wider = max(abs(width_x), abs(width_y))
            slack = max(tolerance, relative * wider)  # resampling noise grows with the interval's own width
            return (abs(xs[0] - ys[0]) <= 1e-9 and abs(xs[1] - ys[1]) <= slack and abs(xs[2] - ys[2]) <= slack
                    and abs(width_x - width_y) <= 0.25 * wider + 1e-12)
        return all(abs(u - v) <= tolerance for u, v in zip(xs, ys))
    return same


def _boot_matches(fn, args: tuple, tolerance: float, relative: float = 0.0) -> list[Mistake]:
    received = _boot_outcome(fn, *args)
    return matching(BOOT_MISTAKES, lambda mistake: _boot_outcome(mistake, *args), received,
                    _close_to(tolerance, relative))


def _numbers(case: str, result: object, diagnose=lambda: ()) -> tuple[float, float, float]:
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        fail(case, "a tuple (mean_difference, low, high)", short(result),
             "return all three numbers: `return mean, low, high`", diagnose())
    try:
        values = tuple(float(v) for v in result)
    except (TypeError, ValueError):
        fail(case, "three numbers (mean_difference, low, high)", short(result),
             "return plain numbers (floats), e.g. float(np.mean(d)), not arrays or strings", diagnose())
    if not all(math.isfinite(v) for v in values):
        fail(case, "three finite numbers", short(result), "the mean and both bounds are finite numbers (no NaN or inf)",
             diagnose())
    return values


def _expect_interval(case: str, fn, a, b, n_boot: int = 4000, seed: int = 0) -> None:
    """Call fn(a, b, n_boot, seed) and compare with the reference mean and 95 % paired percentile interval."""
    a_arr, b_arr = _asarray(a, dtype=float), _asarray(b, dtype=float)
    d = a_arr - b_arr
    a_copy, b_copy = a_arr.copy(), b_arr.copy()
    want_low, want_high, _, _ = _references(tuple(d.tolist()), tuple(b_arr.tolist()))
    width = want_high - want_low
    tolerance = 0.1 * width  # bootstrap noise of a correct 4000-resample interval stays well inside this
    # A catalogue mistake matches within half that: two 4000-resample intervals drawn differently differ by less.
    diagnose = functools.partial(_boot_matches, fn, (a_copy if isinstance(a, np.ndarray) else list(a),
                                                     b_copy if isinstance(b, np.ndarray) else list(b), n_boot, seed),
                                 0.5 * tolerance, 0.05)
    result = call(case, fn, a, b, n_boot, seed, hint="paired_bootstrap(a, b, n_boot, seed) -> (mean, low, high)")
    if isinstance(a, np.ndarray) and not (_array_equal(a, a_copy) and _array_equal(b, b_copy)):
        fail(case, "a and b left unchanged", "paired_bootstrap changed the arrays it was given (in place)",
             "compute d = a - b into a new array, leaving a and b as they were", diagnose())
    mean, low, high = _numbers(case, result, diagnose)
    true_mean = float(d.mean())
    if not math.isclose(mean, true_mean, abs_tol=1e-9):
        received = f"{mean:.6f}"
        if math.isclose(mean, -true_mean, abs_tol=1e-9):
            received += " (minus the expected mean)"
        elif math.isclose(mean, float(_median(d)), abs_tol=1e-9):
            received += " (the median of the differences a - b)"
        fail(case, f"mean difference {true_mean:.6f}", received,
             "the first number is the plain mean of the paired differences a[i] - b[i], over all pairs", diagnose())
    if low > high:
        fail(case, "low <= high", f"low {low:.4f} > high {high:.4f}", "return (mean, low, high) in that order",
             diagnose())
    if abs(low - want_low) <= tolerance and abs(high - want_high) <= tolerance:
        return
    received = f"({mean:.4f}, {low:.4f}, {high:.4f})"
    if math.isclose(low, high, abs_tol=1e-12):
        received += ": low == high"
    else:
        received += f": width {high - low:.4f}, the expected width is about {width:.4f}"
    expected = f"about ({true_mean:.4f}, {want_low:.4f}, {want_high:.4f}), each bound within {tolerance:.4f}"
    fail(case, expected, received,
         "resample the n pairs with replacement n_boot times, take each resample's mean difference, and return "
         "the 2.5th and 97.5th percentiles of those n_boot means", diagnose())


def _expect_value_error(case: str, fn, a, b, why: str) -> None:
    diagnose = functools.partial(_boot_matches, fn, (list(a), list(b), 100, 0), 1e-9)
    try:
        with quiet():
            result = fn(a, b, 100, 0)
    except ValueError:
        return
    except NotImplementedError:
        fail(case, "ValueError", "NotImplementedError: the function is still the stub", "write the function first")
    except Exception as error:  # noqa: BLE001 (any other error is the wrong kind)
        fail(case, "ValueError", raised(error), f"raise ValueError with a clear message: {why}",
             diagnose())
    fail(case, "ValueError", f"returned {short(result)}", f"check the input first and raise ValueError: {why}",
         diagnose())


def _pinned(fn, *args, global_seed: int = 0) -> object:
    """fn(*args) with NumPy's global random state seeded for the call, and put back as it was after."""
    state = np.random.get_state()
    try:
        np.random.seed(global_seed)
        return _boot_outcome(fn, *args)
    finally:
        np.random.set_state(state)


@register
def check_paired_bootstrap(paired_bootstrap) -> None:
    """Mean and interval against a 200 000-resample reference, the seed, n_boot, and bad input."""
    _expect_interval("8 paired seeds (lists), a better on every seed", paired_bootstrap, list(_A), list(_B))
    _expect_interval("6 paired seeds (NumPy arrays), one far-off seed, a worse", paired_bootstrap,
                     np.array(_C), np.array(_D), seed=3)
    case = "the same seed twice"
    args = (list(_E), list(_F), 500, 7)
    first = _numbers(case, call(case, paired_bootstrap, *args))
    again = _numbers(case, call(case, paired_bootstrap, *args))
    if first != again:
        received, matches = f"{first} then {again}", []

        def outcome(fn):  # with np.random's global state seeded 0, then 1
            return ("pinned", _pinned(fn, *args, global_seed=0), _pinned(fn, *args, global_seed=1))

        pinned = outcome(paired_bootstrap)
        if _close_to(1e-12)(pinned[1], _pinned(paired_bootstrap, *args, global_seed=0)):  # reproducible so
            received += "; the same both times when np.random's global state is reset before each call"
            matches = matching(BOOT_MISTAKES, outcome, pinned,
                               lambda x, y: all(_close_to(1e-12)(u, v) for u, v in zip(x[1:], y[1:])))
        fail(case, "the same interval both times", received,
             "the resamples come from rng = np.random.default_rng(seed) alone", matches)
    case = "seeds 1 and 2"
    one = _numbers(case, call(case, paired_bootstrap, list(_E), list(_F), 1000, 1))
    two = _numbers(case, call(case, paired_bootstrap, list(_E), list(_F), 1000, 2))
    if one[1:] == two[1:]:
        low, high, _, _ = _references(tuple((_asarray(_E) - _asarray(_F)).tolist()), tuple(_F))

        def outcome(fn):  # the interval for seed 1, if seed 2 gives the very same one (np.random's state differing)
            first = _pinned(fn, list(_E), list(_F), 1000, 1, global_seed=1)
            second = _pinned(fn, list(_E), list(_F), 1000, 2, global_seed=2)
            return first if _close_to(1e-12)(first, second) else ("differs",)

        fail(case, "different resamples, so (slightly) different intervals", f"{one} both times",
             "the resamples must come from np.random.default_rng(seed), with the seed you are given",
             matching(BOOT_MISTAKES, outcome, ("value", one), _close_to(0.1 * (high - low))))
    case = "n_boot=1: a single resample"
    single = _numbers(case, call(case, paired_bootstrap, list(_A), list(_B), 1, 0))
    if not math.isclose(single[1], single[2], abs_tol=1e-12):
        low, high, _, _ = _references(tuple((_asarray(_A) - _asarray(_B)).tolist()), tuple(_B))
        fail(case, "low == high (the percentiles of one resampled mean)", f"{single}",
             "draw exactly n_boot resamples: with n_boot = 1 there is one mean, so both percentiles are that mean",
             _boot_matches(paired_bootstrap, (list(_A), list(_B), 1, 0), 0.05 * (high - low)))
    _expect_value_error("a has 8 values, b has 1", paired_bootstrap, list(_A), [0.5],
                        "a and b must hold one value per seed each (equal lengths); NumPy would broadcast")
    _expect_value_error("a single pair", paired_bootstrap, [0.7], [0.6], "at least 2 pairs are needed to resample")
    passed("paired_bootstrap", "the paired mean and its 95 % bootstrap interval, seeded, with n_boot resamples; "
                               "bad input raises ValueError")
