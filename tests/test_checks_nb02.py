"""The checks of 02_data reject the mistakes students make and accept every correct variant."""

from __future__ import annotations

import pytest
import torch
from check_assertions import assert_accepts, assert_rejects

import tutor_lib.checks as checks
import tutor_lib.data
from tutor_lib.checks import CheckError, check_draw_shape, check_make_qa
from tutor_lib.checks.nb02_data import _geometry
from tutor_lib.data import COLOR_RGB
from tutor_lib.vocab import COLORS, POSITIONS, SHAPES, VOCAB

CENTERS = {"top-left": (1, 1), "top-right": (1, 3), "bottom-left": (3, 1), "bottom-right": (3, 3), "center": (2, 2)}


def _center(position, size):
    row, col = CENTERS[position]
    return row * size // 4, col * size // 4


def _finish(image, noise_std, generator):
    if noise_std > 0:
        image = image + noise_std * torch.randn(image.shape, generator=generator)
    return image.clamp(0, 1)


# -- draw_shape: correct variants -------------------------------------------------------------------

def draw_meshgrid(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """The seed's way: meshgrid with indexing='ij', then paint each channel."""
    image = torch.zeros(3, image_size, image_size)
    cy, cx = _center(position, image_size)
    r = image_size // 6
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2 if shape == "circle" else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    for c, value in enumerate(COLOR_RGB[color]):
        image[c][mask] = value
    return _finish(image, noise_std, generator)


def draw_row_loop(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """One row at a time, noise from torch.normal (different numbers than randn, same distribution)."""
    image = torch.zeros(3, image_size, image_size)
    cy, cx = _center(position, image_size)
    r = image_size // 6
    xs = torch.arange(image_size)
    rgb = torch.tensor(COLOR_RGB[color]).view(3, 1)
    for y in range(image_size):
        if shape == "circle":
            inside = (xs - cx) ** 2 + (y - cy) ** 2 < r * r
        else:
            inside = ((xs - cx).abs() < r) & (abs(y - cy) < r)
        image[:, y] = inside.float() * rgb
    if noise_std > 0:
        image = image + torch.normal(0.0, noise_std, size=image.shape, generator=generator)
    return torch.clamp(image, 0.0, 1.0)


def draw_float64(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """Broadcasting in float64; returns float64."""
    ys = torch.arange(image_size, dtype=torch.float64)[:, None]
    xs = torch.arange(image_size, dtype=torch.float64)[None, :]
    cy, cx = _center(position, image_size)
    r = image_size // 6
    mask = (xs - cx) ** 2 + (ys - cy) ** 2 < r**2 if shape == "circle" else torch.maximum((xs - cx).abs(), (ys - cy).abs()) < r
    image = mask[None].double() * torch.tensor(COLOR_RGB[color], dtype=torch.float64)[:, None, None]
    if noise_std > 0:
        image = image + noise_std * torch.randn(image.shape, generator=generator, dtype=torch.float64)
    return image.clamp(0, 1)


# -- draw_shape: typical mistakes -------------------------------------------------------------------

def draw_xy_swapped(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    cx, cy = _center(position, image_size)  # row and column mixed up
    r = image_size // 6
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2 if shape == "circle" else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_meshgrid_xy(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    cy, cx = _center(position, image_size)
    r = image_size // 6
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="xy")  # transposed grids
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2 if shape == "circle" else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_channels_last(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    return draw_meshgrid(color, shape, position, image_size, noise_std, generator).permute(1, 2, 0)


def draw_no_clamp(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    return image + noise_std * torch.randn(image.shape, generator=generator)


def draw_randn_like(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    return (image + noise_std * torch.randn_like(image)).clamp(0, 1)


def draw_reseeds(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    torch.manual_seed(0)
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    return (image + noise_std * torch.randn(image.shape)).clamp(0, 1)


def draw_fixed_noise(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    if noise_std > 0:
        image = image + 0.05 * torch.randn(image.shape, generator=generator)  # ignores noise_std
    return image.clamp(0, 1)


def draw_noise_in_shape_only(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    noise = noise_std * torch.randn(image.shape, generator=generator)
    return (image + noise * (image > 0)).clamp(0, 1)


def draw_inclusive_edge(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    cy, cx = _center(position, image_size)
    r = image_size // 6
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 <= r**2 if shape == "circle" else ((x - cx).abs() <= r) & ((y - cy).abs() <= r)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_hard_coded_64(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    return draw_meshgrid(color, shape, position, 64, noise_std, generator)


def draw_uint8(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    return (draw_meshgrid(color, shape, position, image_size, 0.0) * 255).to(torch.uint8)


def draw_pure_colors(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    pure = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
    mask = draw_meshgrid("red", shape, position, image_size, 0.0)[0] > 0
    return _finish(mask[None].float() * torch.tensor(pure[color])[:, None, None], noise_std, generator)


def draw_float_radius(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    cy, cx = _center(position, image_size)
    r = image_size / 6
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2 if shape == "circle" else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_floor_first(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """3 * (S // 4) for the far centers: right at sizes 64 and 48, one pixel off at 30."""
    row, col = CENTERS[position]
    cy, cx = (3 * (image_size // 4) if k == 3 else k * image_size // 4 for k in (row, col))
    r = image_size // 6
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2 if shape == "circle" else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_always_noise(color, shape, position, image_size=64, noise_std=0.05, generator=None):  # issue 17's example
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    return (image + 0.05 * torch.randn(3, image_size, image_size, generator=generator)).clamp(0, 1)


def draw_bgr(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0).flip(0)
    return _finish(image, noise_std, generator)


def draw_diameter(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    cy, cx = _center(position, image_size)
    half = (image_size // 6) // 2  # S // 6 read as the size of the shape
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 < half**2 if shape == "circle" else ((x - cx).abs() < half) & ((y - cy).abs() < half)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_unsquared(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    cy, cx = _center(position, image_size)
    r = image_size // 6
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r if shape == "circle" else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_uniform_noise(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    return (image + noise_std * torch.rand(image.shape, generator=generator)).clamp(0, 1)


def draw_std_as_variance(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    return _finish(image, noise_std**0.5, generator)


def draw_clamp_before_noise(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0).clamp(0, 1)
    return image + noise_std * torch.randn(image.shape, generator=generator)


# -- draw_shape: mistakes in no catalogue (the message must name none) -----------------------------

def draw_radius_plus_one(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    cy, cx = _center(position, image_size)
    r = image_size // 6 + 1
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2 if shape == "circle" else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    return _finish(mask[None].float() * torch.tensor(COLOR_RGB[color])[:, None, None], noise_std, generator)


def draw_double_noise(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    return _finish(draw_meshgrid(color, shape, position, image_size, 0.0), 2 * noise_std, generator)


def draw_always_noise_float64(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """Ignores noise_std like the issue's example, with other random numbers: no exact match, so nothing named."""
    image = draw_meshgrid(color, shape, position, image_size, 0.0).double()
    return (image + 0.05 * torch.randn(image.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)


def draw_gray(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0)
    return _finish(image.mean(0, keepdim=True).expand(3, -1, -1), noise_std, generator)


def draw_shifted_down(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    image = draw_meshgrid(color, shape, position, image_size, 0.0).roll(1, dims=1)
    return _finish(image, noise_std, generator)


def test_check_geometry_is_the_reference_geometry():
    for size in (64, 48, 30):
        for color in COLORS:
            for shape in SHAPES:
                for position in POSITIONS:
                    reference = tutor_lib.data.draw_shape(color, shape, position, image_size=size, noise_std=0)
                    assert torch.equal(_geometry(color, shape, position, size), reference)


@pytest.mark.parametrize("fn", [draw_meshgrid, draw_row_loop, draw_float64, tutor_lib.data.draw_shape])
def test_draw_shape_accepts_correct_variants(fn, capsys):
    assert_accepts(check_draw_shape, fn, capsys, "draw_shape")


SWAPPED = "x and y swapped: the center's row used as its column"
NO_CLAMP = "no clamp to [0, 1] after adding the noise"


@pytest.mark.parametrize("fn, names, fragments", [
    (draw_xy_swapped, SWAPPED, ["'top-right'", "rows are y"]),
    (draw_meshgrid_xy, SWAPPED, ["'top-right'", "rows are y"]),
    (draw_channels_last, "channels last (S, S, 3)", ["channels last", "(C, H, W)"]),
    (draw_no_clamp, NO_CLAMP, ["values in [0, 1]", "clamp after adding the noise"]),
    (draw_randn_like, "noise from the global generator, not `generator` (randn_like)",
     ["generators seeded alike", "randn_like ignores it"]),
    (draw_reseeds, "torch.manual_seed(0) inside draw_shape", ["seeded differently", "do not reseed"]),
    (draw_fixed_noise, "noise_std ignored: always noise of std 0.05", ["noise_std=0.02", "std 0.02", "noise_std argument"]),
    (draw_noise_in_shape_only, "noise on the shape only, not the background", ["background", "background included"]),
    (draw_inclusive_edge, "the edge included (<= instead of <)", ["strictly inside"]),
    (draw_hard_coded_64, "image_size ignored: always 64 x 64",
     ["image_size=48", "shape (3, 48, 48)", "use the image_size argument"]),
    (draw_uint8, "0-255 integers (uint8)", ["floating-point", "0-255"]),
    (draw_pure_colors, "pure colors (1, 0, 0) instead of COLOR_RGB", ["COLOR_RGB", "(1.0, 0.1, 0.1)"]),
    (draw_float_radius, "radius image_size / 6, not rounded down", ["radius is image_size // 6"]),
    (draw_floor_first, "far centers 3 * (S // 4) instead of (3 * S) // 4",
     ["image_size=30", "(3 * S) // 4", "multiply before dividing"]),
    (draw_always_noise, "noise_std ignored: always noise of std 0.05", ["noise_std=0", "noise_std argument"]),
    (draw_bgr, "channels in B, G, R order", ["noise_std=0", "channel 0 is red"]),
    (draw_diameter, "S // 6 taken as the diameter: radius (S // 6) // 2", ["S // 6 is the radius"]),
    (draw_unsquared, "circle: squared distance compared with r, not r ** 2", ["'circle'", "square the radius"]),
    (draw_uniform_noise, "uniform noise (torch.rand) instead of Gaussian", ["noise_std=0.02", "Gaussian"]),
    (draw_std_as_variance, "noise_std taken as the variance (std sqrt(noise_std))", ["noise_std=0.02"]),
    (draw_clamp_before_noise, NO_CLAMP, ["values in [0, 1]"]),
    (draw_radius_plus_one, None, ["noise_std=0", "radius S // 6"]),
    (draw_double_noise, None, ["noise_std=0.02", "std 0.02"]),
    (draw_always_noise_float64, None, ["noise_std=0", "values are neither 0 nor one of"]),
    (draw_gray, None, ["noise_std=0", "the lit pixels are the expected ones"]),
    (draw_shifted_down, None, ["noise_std=0", "radius S // 6"]),
])
def test_draw_shape_rejects_mistakes(fn, names, fragments, capsys):
    assert_rejects(check_draw_shape, fn, *fragments, names=names, capsys=capsys)


def test_draw_shape_check_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    check_draw_shape(draw_meshgrid)
    with pytest.raises(CheckError):
        check_draw_shape(draw_always_noise)
    assert torch.equal(torch.get_rng_state(), state)


# -- make_qa ---------------------------------------------------------------------------------------

QUESTION_WORDS = {"color": ["what", "color", "?"], "shape": ["what", "shape", "?"], "position": ["where", "is", "it", "?"]}


def qa_dict_lookup(color, shape, position, question_type):
    answer = {"color": color, "shape": shape, "position": position}[question_type]
    return {"question_tokens": [VOCAB[w] for w in QUESTION_WORDS[question_type]],
            "answer_tokens": [VOCAB[answer]], "caption_tokens": [VOCAB[color], VOCAB[shape]]}


def qa_if_chain(color, shape, position, question_type):
    if question_type == "color":
        q, a = [3, 4, 9], [VOCAB[color]]
    elif question_type == "shape":
        q, a = [3, 5, 9], [VOCAB[shape]]
    elif question_type == "position":
        q, a = [6, 7, 8, 9], [VOCAB[position]]
    else:
        raise ValueError(question_type)
    return {"question_tokens": q, "answer_tokens": a, "caption_tokens": [VOCAB[color], VOCAB[shape]],
            "question_type": question_type}  # an extra key is fine


def qa_with_end(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["answer_tokens"] = out["answer_tokens"] + [VOCAB["<end>"]]
    return out


def qa_caption_swapped(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["caption_tokens"] = [VOCAB[shape], VOCAB[color]]
    return out


def qa_words(color, shape, position, question_type):
    answer = {"color": color, "shape": shape, "position": position}[question_type]
    return {"question_tokens": QUESTION_WORDS[question_type], "answer_tokens": [answer], "caption_tokens": [color, shape]}


def qa_int_answer(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["answer_tokens"] = out["answer_tokens"][0]
    return out


def qa_short_keys(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    return {"question": out["question_tokens"], "answer": out["answer_tokens"], "caption": out["caption_tokens"]}


def qa_always_color(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["answer_tokens"] = [VOCAB[color]]
    return out


def qa_position_question_missing_it(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    if question_type == "position":
        out["question_tokens"] = [VOCAB["where"], VOCAB["is"], VOCAB["?"]]
    return out


def qa_tensors(color, shape, position, question_type):
    return {k: torch.tensor(v) for k, v in qa_dict_lookup(color, shape, position, question_type).items()}


def qa_unknown_word(color, shape, position, question_type):
    words = {"color": "what color ?", "shape": "what shape ?", "position": "what position ?"}[question_type]
    out = qa_dict_lookup(color, shape, position, question_type)
    out["question_tokens"] = [VOCAB[w] for w in words.split()]
    return out


def qa_start_in_question(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["question_tokens"] = [VOCAB["<start>"]] + out["question_tokens"]
    return out


def qa_caption_with_position(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["caption_tokens"] = [VOCAB[color], VOCAB[shape], VOCAB[position]]
    return out


def qa_no_question_mark(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["question_tokens"] = [t for t in out["question_tokens"] if t != VOCAB["?"]]
    return out


def qa_answer_is_type(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["answer_tokens"] = [VOCAB[question_type]]
    return out


# -- make_qa: mistakes in no catalogue (the message must name none) --------------------------------

def qa_answer_off_by_one(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["answer_tokens"] = [out["answer_tokens"][0] + 1]
    return out


def qa_caption_color_only(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["caption_tokens"] = [VOCAB[color]]
    return out


def qa_question_reversed(color, shape, position, question_type):
    out = qa_dict_lookup(color, shape, position, question_type)
    out["question_tokens"] = out["question_tokens"][::-1]
    return out


def qa_tuples(color, shape, position, question_type):
    return {k: tuple(v) for k, v in qa_dict_lookup(color, shape, position, question_type).items()}


@pytest.mark.parametrize("fn", [qa_dict_lookup, qa_if_chain, tutor_lib.data.make_qa])
def test_make_qa_accepts_correct_variants(fn, capsys):
    assert_accepts(check_make_qa, fn, capsys, "make_qa", "all 90")


@pytest.mark.parametrize("fn, names, fragments", [
    (qa_with_end, "<end> appended to the answer",
     ["['answer_tokens']", "[10] (red)", "[10, 2] (red <end>)", "no <start> or <end>"]),
    (qa_caption_swapped, "caption '<shape> <color>' instead of '<color> <shape>'", ["['caption_tokens']", "color first"]),
    (qa_words, "words instead of token ids", ["token ids, not words"]),
    (qa_int_answer, "the answer as an int, not a list", ["the int 10", "even a one-word answer is a list"]),
    (qa_short_keys, "keys 'question', 'answer', 'caption'", ["keys", "'question_tokens'", "keep the seed's key names"]),
    (qa_always_color, "every question answered with the color", ["'shape')['answer_tokens']", "its own value"]),
    (qa_position_question_missing_it, "'where is ?' for the position question ('it' missing)",
     ["'position')['question_tokens']", "'where is it ?'"]),
    (qa_tensors, "tensors instead of lists", ["plain Python lists"]),
    (qa_unknown_word, "'what position ?' as the position question", ["'position')", "KeyError", "in VOCAB"]),
    (qa_start_in_question, "<start> put before the question", ["['question_tokens']", "no <start> or <end>"]),
    (qa_caption_with_position, "the position in the caption too", ["['caption_tokens']", "'<color> <shape>'"]),
    (qa_no_question_mark, "the questions without their '?'", ["['question_tokens']", "'?' is a word"]),
    (qa_answer_is_type, "the question type's word as the answer", ["'color')['answer_tokens']", "not the word"]),
    (qa_answer_off_by_one, None, ["['answer_tokens']", "answered with the color"]),
    (qa_caption_color_only, None, ["['caption_tokens']", "'<color> <shape>'"]),
    (qa_question_reversed, None, ["['question_tokens']", "look each word up"]),
    (qa_tuples, None, ["a list of ints"]),
])
def test_make_qa_rejects_mistakes(fn, names, fragments, capsys):
    assert_rejects(check_make_qa, fn, *fragments, names=names, parts=("hint:",), capsys=capsys)


# -- guards -----------------------------------------------------------------------------------------

def draw_wraps_batch_reference(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    index = [torch.tensor([names.index(v)]) for v, names in [(color, COLORS), (shape, SHAPES), (position, POSITIONS)]]
    return tutor_lib.data.draw_shapes(*index, image_size=image_size, noise_std=noise_std, generator=generator)[0]


def qa_wraps_reference(color, shape, position, question_type):
    return dict(tutor_lib.data.make_qa(color, shape, position, question_type))


@pytest.mark.parametrize("name, fn, forbidden, fragment", [
    ("draw_shape", tutor_lib.data.draw_shape, [tutor_lib.data.draw_shape, tutor_lib.data.draw_shapes], "tutor_lib's own"),
    ("draw_shape", draw_wraps_batch_reference, [tutor_lib.data.draw_shape, tutor_lib.data.draw_shapes], "draw_shapes"),
    ("make_qa", tutor_lib.data.make_qa, [tutor_lib.data.make_qa], "tutor_lib's own"),
    ("make_qa", qa_wraps_reference, [tutor_lib.data.make_qa], "it calls 'make_qa'"),
])
def test_hidden_guard_rejects_the_reference(name, fn, forbidden, fragment):
    with pytest.raises(CheckError, match=fragment):
        checks.not_reference(name, fn, forbidden)


def test_hidden_guard_accepts_own_code_that_uses_the_given_tables():
    checks.not_reference("draw_shape", draw_meshgrid, [tutor_lib.data.draw_shape, tutor_lib.data.draw_shapes])
    checks.not_reference("make_qa", qa_dict_lookup, [tutor_lib.data.make_qa])


def test_rebinding_torch_equal_does_not_fool_the_generator_check(monkeypatch):
    monkeypatch.setattr(torch, "equal", lambda *a: True)
    with pytest.raises(CheckError, match="generators seeded alike"):
        check_draw_shape(draw_randn_like)
