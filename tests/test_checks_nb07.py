"""check_hflip_example rejects the typical wrong flips with a specific message and accepts correct variants."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from check_assertions import assert_accepts, assert_rejects

import tutor_lib
from tutor_lib.checks import CheckError, check_hflip_example, not_reference
from tutor_lib.checks.nb07_experiments import expect_flip

SWAP = {"top-left": "top-right", "top-right": "top-left", "bottom-left": "bottom-right",
        "bottom-right": "bottom-left", "center": "center"}


# -- correct variants --------------------------------------------------------------------------

def flip_dict(image, position):
    return torch.flip(image, dims=[2]), SWAP[position]


def flip_index_if_chain(image, position):
    columns = torch.arange(image.shape[-1] - 1, -1, -1)
    if "left" in position:
        new = position.replace("left", "right")
    elif "right" in position:
        new = position.replace("right", "left")
    else:
        new = position
    return image[:, :, columns], new


def flip_numpy_list(image, position):
    mirrored = torch.from_numpy(np.ascontiguousarray(image.numpy()[:, :, ::-1]))
    words = position.split("-")
    words = [{"left": "right", "right": "left"}.get(w, w) for w in words]
    return [mirrored, "-".join(words)]


def flip_fliplr(image, position):
    return torch.fliplr(image.permute(1, 2, 0)).permute(2, 0, 1), SWAP[position]


@pytest.mark.parametrize("fn", [flip_dict, flip_index_if_chain, flip_numpy_list, flip_fliplr])
def test_correct_variants_pass(fn, capsys):
    assert_accepts(check_hflip_example, fn, capsys, "hflip_example")


def test_reference_passes_check_but_not_not_reference():
    check_hflip_example(tutor_lib.hflip_example)
    not_reference("hflip_example", flip_dict, [tutor_lib.augment.hflip_example])
    with pytest.raises(CheckError, match="your own implementation"):
        not_reference("hflip_example", tutor_lib.hflip_example, [tutor_lib.augment.hflip_example])

    def wraps_reference(image, position):
        return tutor_lib.augment.hflip_example(image, position)

    with pytest.raises(CheckError, match="calls"):
        not_reference("hflip_example", wraps_reference, [tutor_lib.augment.hflip_example])


# -- typical mistakes, each with the message it must produce ----------------------------------

# name: (wrong variant, a fragment of its message, the catalogue mistake it must be named as, or None)
WRONG = {
    "vertical flip": (lambda im, p: (im.flip(1), SWAP[p]), "upside down", "rows flipped (upside down), not columns"),
    "channels flipped (dim 0 of channels-first)": (lambda im, p: (im.flip(0), SWAP[p]), "color channels are reversed",
                                                   "color channels flipped (dim 0), not columns"),
    "both axes": (lambda im, p: (im.flip(1, 2), SWAP[p]), "both ways", "flipped both ways (a 180-degree rotation)"),
    "image not flipped": (lambda im, p: (im.clone(), SWAP[p]), "image is unchanged", "image not flipped"),
    "transposed": (lambda im, p: (im.transpose(1, 2), SWAP[p]), "transposed", "transposed, not mirrored"),
    "label not swapped": (lambda im, p: (im.flip(-1), p), "would learn wrong answers", "label not swapped"),
    "center swapped": (lambda im, p: (im.flip(-1), {**SWAP, "center": "top-left"}[p]), "'center' stays 'center'",
                       None),
    "top and bottom swapped": (lambda im, p: (im.flip(-1), p.replace("top", "#").replace("bottom", "top")
                                              .replace("#", "bottom")), "keeps 'top'/'bottom'",
                               "top and bottom swapped in the label, not left and right"),
    "channels-last result": (lambda im, p: (im.flip(-1).permute(1, 2, 0), SWAP[p]), "channels last",
                             "channels-last image returned"),
    "label only returned": (lambda im, p: SWAP[p], "a pair", "only the new position returned"),
    # 1 is the index of 'top-right', the right answer for the first case, but not for the others: not the mistake
    "position as an index": (lambda im, p: (im.flip(-1), 1), "a string", None),
    "noise added": (lambda im, p: (im.flip(-1) + 0.01, SWAP[p]), "largest difference", None),
    # new: catalogued mistakes
    "str.replace twice": (lambda im, p: (im.flip(-1), p.replace("left", "right").replace("right", "left")),
                          "top-right -> top-left", "str.replace twice: 'right' turned back into 'left'"),
    "rotated 180 degrees, label too": (lambda im, p: (im.flip(1, 2), p.replace("top", "#").replace("bottom", "top")
                                                .replace("#", "bottom").replace("left", "#").replace("right", "left")
                                                .replace("#", "right")), "both ways", None),
    "center indexed past its one word": (lambda im, p: (im.flip(2), "-".join([p.split("-")[0],
                                                                              SWAP[p].split("-")[1]])),
                                         "IndexError", None),
    "column 0 dropped": (lambda im, p: (im[:, :, list(range(im.shape[2] - 1, 0, -1))], SWAP[p]), "shape (3, 8, 7)",
                         "column 0 dropped (index range stops at 1)"),
    "pair reversed": (lambda im, p: [SWAP[p], torch.flip(im, [2])], "a torch.Tensor",
                      "(position, image) returned in that order"),
    "numpy result": (lambda im, p: (np.ascontiguousarray(im.numpy()[:, :, ::-1]), SWAP[p]), "ndarray",
                     "a NumPy array, not a tensor"),
    "index of the new position": (lambda im, p: (im.flip(2), ["top-left", "top-right", "bottom-left", "bottom-right",
                                                               "center"].index(SWAP[p])), "a string",
                                  "the new position's index, not its name"),
    # new: two mistakes at once, or none of the catalogue: nothing may be named
    "vertical flip and label not swapped": (lambda im, p: (im.flip(1), p), "upside down", None),
    "columns rolled by one": (lambda im, p: (im.roll(1, -1), SWAP[p]), "largest difference", None),
    "rescaled to 0-255": (lambda im, p: ((255 * im.flip(-1)).round(), SWAP[p]), "largest difference", None),
    "center becomes bottom": (lambda im, p: (im.flip(-1), {**SWAP, "center": "bottom-left"}[p]), "'center'", None),
}


def _in_place(image, position):
    image.copy_(image.flip(-1))
    return image, SWAP[position]


WRONG["flipped in place"] = (_in_place, "in place", "input image flipped in place")


def _split_center(image, position):
    vertical, horizontal = position.split("-")
    return image.flip(-1), f"{vertical}-{SWAP[position].split('-')[1]}"


WRONG["center split on '-'"] = (_split_center, "ValueError: not enough values", "'center' split on '-' (it has none)")


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_variants_fail_with_a_specific_message(name, capsys):
    fn, message, names = WRONG[name]
    fn.__qualname__ = f"hflip: {name}"  # for the feedback audit
    assert_rejects(check_hflip_example, fn, match=re.escape(message), names=names, capsys=capsys)


def test_an_exception_in_student_code_is_a_failure_without_stderr(capsys):
    def broken(image, position):
        import warnings
        warnings.warn("noisy", stacklevel=2)
        raise RuntimeError("boom")

    with pytest.raises(CheckError, match="RuntimeError: boom"):
        check_hflip_example(broken)
    assert capsys.readouterr().err == ""


def test_expect_flip_with_literal_values():
    image = torch.arange(12.0).view(3, 2, 2)
    expected = torch.tensor([[[1.0, 0.0], [3.0, 2.0]], [[5.0, 4.0], [7.0, 6.0]], [[9.0, 8.0], [11.0, 10.0]]])
    expect_flip("literal", flip_dict, image, "top-left", expected, "top-right")
    message = assert_rejects(lambda fn: expect_flip("literal", fn, image, "top-left", expected, "top-right"),
                             WRONG["label not swapped"][0], "wrong answers", names="label not swapped")
    assert "for all 5: top-left -> top-left" in message


def test_check_is_fast():
    import time

    start = time.perf_counter()
    check_hflip_example(flip_dict)
    assert time.perf_counter() - start < 2.0


# == paired_bootstrap ===========================================================================

from tutor_lib.checks import check_paired_bootstrap  # noqa: E402
from tutor_lib.checks.nb07_experiments import _A, _B, _C, _D, _expect_interval  # noqa: E402
from tutor_lib.stats import paired_bootstrap as reference_bootstrap  # noqa: E402


def _checked(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or len(a) < 2:
        raise ValueError("need equal lengths and at least 2 pairs")
    return a, b


def boot_vectorised(a, b, n_boot, seed):
    a, b = _checked(a, b)
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return d.mean(), low, high


def boot_loop_sorted(a, b, n_boot, seed):
    """A loop over resamples with rng.choice on the pairs, and percentiles read off the sorted means."""
    if len(a) != len(b):
        raise ValueError("a and b differ in length")
    if len(a) < 2:
        raise ValueError("too few pairs")
    rng = np.random.default_rng(seed)
    pairs = list(zip(a, b))
    means = []
    for _ in range(n_boot):
        chosen = [pairs[i] for i in rng.choice(len(pairs), size=len(pairs), replace=True)]
        means.append(sum(x - y for x, y in chosen) / len(chosen))
    means.sort()
    return (float(np.mean(np.subtract(a, b))), means[int(0.025 * (n_boot - 1))], means[int(round(0.975 * (n_boot - 1)))])


def boot_torch(a, b, n_boot, seed):
    """torch for the arithmetic, NumPy's seeded generator for the indices."""
    a, b = _checked(a, b)
    d = torch.tensor(a - b)
    idx = torch.from_numpy(np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d))))
    means = d[idx].mean(1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype)).tolist()
    return float(d.mean()), low, high


@pytest.mark.parametrize("fn", [reference_bootstrap, boot_vectorised, boot_loop_sorted, boot_torch])
def test_paired_bootstrap_correct_variants_pass(fn, capsys):
    assert_accepts(check_paired_bootstrap, fn, capsys, "paired_bootstrap")


@pytest.mark.parametrize("seed", range(12))
def test_correct_intervals_stay_well_inside_the_tolerance(seed):
    """Bootstrap noise: whatever the seed, a correct 4000-resample interval passes the comparison."""
    for a, b in ((_A, _B), (_C, _D)):
        _expect_interval("noise", boot_vectorised, list(a), list(b), seed=seed)
        _expect_interval("noise", boot_loop_sorted, list(a), list(b), seed=seed)


def _unpaired(a, b, n_boot, seed):
    a, b = _checked(a, b)
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(1)
    mb = b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(1)
    low, high = np.percentile(ma - mb, [2.5, 97.5])
    return (a - b).mean(), low, high


def _percentiles_of_d(a, b, n_boot, seed):
    a, b = _checked(a, b)
    low, high = np.percentile(a - b, [2.5, 97.5])
    return (a - b).mean(), low, high


def _with_percentiles(q, sign=1.0, replace=True, fixed_boot=None, global_rng=False, median=False):
    def boot(a, b, n_boot, seed):
        a, b = _checked(a, b)
        d = sign * (a - b)
        n_boot = fixed_boot or n_boot
        if global_rng:
            idx = np.random.randint(0, len(d), size=(n_boot, len(d)))
        elif replace:
            idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
        else:
            rng = np.random.default_rng(seed)
            idx = np.stack([rng.permutation(len(d)) for _ in range(n_boot)])
        low, high = np.percentile(d[idx].mean(1), q)
        return (np.median(d) if median else d.mean()), low, high
    return boot


def _normal_sd(a, b, n_boot, seed):
    a, b = _checked(a, b)
    d = a - b
    return d.mean(), d.mean() - 1.96 * d.std(ddof=1), d.mean() + 1.96 * d.std(ddof=1)


def _no_length_check(a, b, n_boot, seed):
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)  # broadcasts a single b
    means = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return d.mean(), low, high


def _in_place(a, b, n_boot, seed):
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("bad input")
    if isinstance(a, np.ndarray):
        a -= b
        d = a
    else:
        d = np.subtract(a, b)
    means = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.mean(d)), low, high


def _returns_two(a, b, n_boot, seed):
    return reference_bootstrap(a, b, n_boot, seed)[1:]


def _boot_with(statistic=np.mean, interval=None, rng=None, check=True):
    """The seeded paired bootstrap with one part swapped out (statistic of each resample, interval, generator)."""
    def boot(a, b, n_boot, seed):
        a, b = _checked(a, b) if check else (np.asarray(a, dtype=float), np.asarray(b, dtype=float))
        d = a - b
        generator = rng() if rng else np.random.default_rng(seed)
        stats = statistic(d[generator.integers(0, len(d), size=(n_boot, len(d)))], axis=1)
        low, high = interval(d, stats) if interval else np.percentile(stats, [2.5, 97.5])
        return d.mean(), low, high
    return boot


def _fixed_seed(a, b, n_boot, seed):
    return _boot_with(rng=lambda: np.random.default_rng(42))(a, b, n_boot, seed)


def _asserted(a, b, n_boot, seed):
    assert len(a) == len(b), "lengths differ"
    assert len(a) > 1, "one pair"
    return boot_vectorised(a, b, n_boot, seed)


def _one_pair_allowed(a, b, n_boot, seed):
    if len(a) != len(b):
        raise ValueError("a and b differ in length")
    d = np.subtract(a, b)
    means = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    return d.mean(), *np.percentile(means, [2.5, 97.5])


def _unpaired_90(a, b, n_boot, seed):
    a, b = _checked(a, b)
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(1)
    mb = b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(1)
    return (a - b).mean(), *np.percentile(ma - mb, [5, 95])


# name: (wrong variant, a fragment of its message, the catalogue mistake it must be named as, or None)
BOOT_WRONG = {
    "a and b resampled independently": (_unpaired, "width", "a and b resampled independently (unpaired)"),
    "percentiles of the differences, no resampling": (_percentiles_of_d, "percentiles of the n_boot means",
                                                      "percentiles of the differences, not of resampled means"),
    "a 90 % interval": (_with_percentiles([5, 95]), "2.5th and 97.5th", "a 90 % interval (5th and 95th percentiles)"),
    "fractions given to np.percentile": (_with_percentiles([0.025, 0.975]), "np.percentile takes percents",
                                         "fractions given to np.percentile"),
    "b minus a": (_with_percentiles([2.5, 97.5], sign=-1.0), "a - b (the first arm minus the second)",
                  "b - a, not a - b"),
    "median instead of mean": (_with_percentiles([2.5, 97.5], median=True), "not their median",
                               "the median of the differences, not their mean"),
    "permutations, not resamples with replacement": (_with_percentiles([2.5, 97.5], replace=False), "WITH replacement",
                                                     "permutations, not resamples with replacement"),
    "mean +- 1.96 sd of the differences": (_normal_sd, "describe one seed's spread", "mean +- 1.96 sd of the differences"),
    "the global NumPy RNG, seed ignored": (_with_percentiles([2.5, 97.5], global_rng=True), "default_rng(seed)",
                                           "the global NumPy RNG, seed ignored"),
    "n_boot ignored (always 2000)": (_with_percentiles([2.5, 97.5], fixed_boot=2000), "exactly n_boot",
                                     "n_boot ignored (a fixed number of resamples)"),
    "no check of the lengths": (_no_length_check, "len(a) != len(b)", "no check of the lengths"),
    "changes a in place": (_in_place, "in place", "a subtracted from in place (a -= b)"),
    "returns (low, high) only": (_returns_two, "tuple (mean_difference, low, high)", "only (low, high) returned"),
    # new: catalogued mistakes
    "sums of the resamples": (_boot_with(statistic=np.sum), "not its sum", "sums of the resamples, not their means"),
    "means over axis 0": (_boot_with(statistic=lambda x, axis: x.mean(0)), "average over axis 1",
                          "means over the resamples (axis 0), not within each"),
    "medians everywhere": (lambda a, b, n, s: (np.median(np.subtract(a, b)),
                                               *_boot_with(statistic=np.median)(a, b, n, s)[1:]),
                           "MEAN of the differences", "medians everywhere, not means"),
    "mean +- one bootstrap standard error": (_boot_with(interval=lambda d, m: (d.mean() - m.std(), d.mean() + m.std())),
                                             "68 %", "mean +- one standard error (a 68 % interval)"),
    "a fixed seed (42)": (_fixed_seed, "use the seed you are given", "a fixed seed, the seed argument ignored"),
    "asserts instead of ValueError": (_asserted, "AssertionError", "assert, not raise ValueError"),
    "a single pair accepted": (_one_pair_allowed, "fewer than 2 pairs", "no check for fewer than 2 pairs"),
    "arm a bootstrapped alone": (lambda a, b, n, s: _boot_with()(a, np.zeros(len(a)), n, s), "not one arm",
                                 "the mean and interval of arm a, not of the difference"),
    # new: two mistakes at once, or none of the catalogue: nothing may be named
    "unpaired and 90 %": (_unpaired_90, "width", None),
    "an unseeded default_rng()": (_boot_with(rng=np.random.default_rng), "default_rng(seed) alone", None),
    "a 99 % interval": (_with_percentiles([0.5, 99.5]), "width", None),
    "percentiles of the first 8 resampled means": (_boot_with(interval=lambda d, m: np.percentile(m[:8], [2.5, 97.5])),
                                                   "expected: about", None),
    "ValueError raised for every input": (lambda a, b, n, s: (_ for _ in ()).throw(ValueError("no")), "ValueError: no",
                                          None),
    "TypeError for unequal lengths": (lambda a, b, n, s: boot_vectorised(a, b, n, s) if len(a) == len(b)
                                      else (_ for _ in ()).throw(TypeError("unequal")), "TypeError", None),
}


@pytest.mark.parametrize("name", list(BOOT_WRONG))
def test_paired_bootstrap_wrong_variants_fail_with_a_specific_message(name, capsys):
    fn, message, names = BOOT_WRONG[name]
    try:
        fn.__qualname__ = f"paired_bootstrap: {name}"  # for the feedback audit
    except AttributeError:
        pass
    assert_rejects(check_paired_bootstrap, fn, match=re.escape(message), names=names, capsys=capsys)


def test_paired_bootstrap_stub_and_speed():
    import time

    def stub(a, b, n_boot, seed):
        raise NotImplementedError()

    with pytest.raises(CheckError, match="still the stub"):
        check_paired_bootstrap(stub)
    start = time.perf_counter()
    check_paired_bootstrap(reference_bootstrap)
    assert time.perf_counter() - start < 2.0
