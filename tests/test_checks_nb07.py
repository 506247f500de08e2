"""check_hflip_example rejects the typical wrong flips with a specific message and accepts correct variants."""

from __future__ import annotations

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

WRONG = {
    "vertical flip": (lambda im, p: (im.flip(1), SWAP[p]), "upside down"),
    "channels flipped (dim 0 of channels-first)": (lambda im, p: (im.flip(0), SWAP[p]), "color channels are reversed"),
    "both axes": (lambda im, p: (im.flip(1, 2), SWAP[p]), "both ways"),
    "image not flipped": (lambda im, p: (im.clone(), SWAP[p]), "image is unchanged"),
    "transposed": (lambda im, p: (im.transpose(1, 2), SWAP[p]), "transposed"),
    "label not swapped": (lambda im, p: (im.flip(-1), p), "label was not swapped"),
    "center swapped": (lambda im, p: (im.flip(-1), {**SWAP, "center": "top-left"}[p]), "center stays in the center"),
    "top and bottom swapped": (lambda im, p: (im.flip(-1), p.replace("top", "#").replace("bottom", "top")
                                              .replace("#", "bottom")), "swapped top and bottom"),
    "channels-last result": (lambda im, p: (im.flip(-1).permute(1, 2, 0), SWAP[p]), "channels-last"),
    "label only returned": (lambda im, p: SWAP[p], "a pair"),
    "position as an index": (lambda im, p: (im.flip(-1), 1), "a string"),
    "noise added": (lambda im, p: (im.flip(-1) + 0.01, SWAP[p]), "only move pixels"),
}


def _in_place(image, position):
    image.copy_(image.flip(-1))
    return image, SWAP[position]


WRONG["flipped in place"] = (_in_place, "in place")


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_variants_fail_with_a_specific_message(name, capsys):
    fn, message = WRONG[name]
    assert_rejects(check_hflip_example, fn, match=message, capsys=capsys)


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
    with pytest.raises(CheckError, match="label was not swapped"):
        expect_flip("literal", WRONG["label not swapped"][0], image, "top-left", expected, "top-right")


def test_check_is_fast():
    import time

    start = time.perf_counter()
    check_hflip_example(flip_dict)
    assert time.perf_counter() - start < 2.0
