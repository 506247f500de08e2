"""Checks for notebook 02_data: draw_shape and make_qa.

draw_shape is compared pixel for pixel with the seed's geometry when noise_std=0 (every one of
the 30 configurations, at three image sizes); the noise is checked separately, by its
statistics and by whether the given generator makes it repeatable, so any correct way of
drawing Gaussian noise passes. Every call runs with the global random generator seeded (and
put back afterwards), so a failure can be matched exactly against the catalogue of mistakes,
noise included. make_qa is compared with the vocabulary's token ids for all
30 x 3 (configuration, question type) pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from ..data import COLOR_RGB, QUESTIONS, shape_centers
from ..vocab import COLORS, END, POSITIONS, QUESTION_TYPES, SHAPES, START, VOCAB
from . import trusted
from ._common import CheckError, allclose, call, equal, fail, passed, quiet, raised, register, short
from ._mistakes import Mistake, catalogue, matching
from ._stages import words

__all__ = ["check_draw_shape", "check_make_qa"]


# -- draw_shape -----------------------------------------------------------------------------------

_CPU_GENERATOR = torch.default_generator  # the global generator that torch.randn(...) and randn_like use on the CPU
_PURE_RGB = {"red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0), "green": (0.0, 1.0, 0.0)}


def _geometry(color: str, shape: str, position: str, size: int, *, strict: bool = True, swap: bool = False,
              float_radius: bool = False, float_centers: bool = False, floor_first: bool = False,
              half_radius: bool = False, unsquared: bool = False, rgb: tuple | None = None) -> torch.Tensor:
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
    if half_radius:
        r = float(size // 6 // 2)
    ys = trusted.arange(size, dtype=torch.float64).view(size, 1)
    xs = trusted.arange(size, dtype=torch.float64).view(1, size)
    if shape == "circle":
        d2 = (xs - col) ** 2 + (ys - row) ** 2
        bound = r if unsquared else r**2
        mask = d2 < bound if strict else d2 <= bound
    else:
        dx, dy = (xs - col).abs(), (ys - row).abs()
        mask = (dx < r) & (dy < r) if strict else (dx <= r) & (dy <= r)
    rgb = trusted.tensor(rgb or COLOR_RGB[color], dtype=torch.float32).view(3, 1, 1)
    return mask.float() * rgb  # (3, S, S)


def _noisy(image: torch.Tensor, noise_std: float, generator) -> torch.Tensor:
    """The seed's noise: noise_std * standard normal noise from the generator, then clamped to [0, 1]."""
    if noise_std > 0:
        image = image + noise_std * trusted.randn(image.shape, generator=generator)
    return image.clamp(0.0, 1.0)


def _geometry_mistake(doc: str, **variation) -> Callable:
    """draw_shape with one variation of the geometry (see _geometry), noise and clamping as the seed's."""

    def draw_shape(color, shape, position, image_size=64, noise_std=0.05, generator=None):
        return _noisy(_geometry(color, shape, position, image_size, **variation), noise_std, generator)

    draw_shape.__doc__ = doc
    return draw_shape


draw_xy_swapped = _geometry_mistake("draw_shape with row and column swapped.", swap=True)
draw_edge_included = _geometry_mistake("draw_shape with <= instead of <: the edge pixels lit.", strict=False)
draw_float_radius = _geometry_mistake("draw_shape with radius image_size / 6, not // 6.", float_radius=True)
draw_float_centers = _geometry_mistake("draw_shape with centers S / 4, S / 2, 3 * S / 4 unrounded.", float_centers=True)
draw_floor_first = _geometry_mistake("draw_shape with far centers 3 * (S // 4).", floor_first=True)
draw_diameter = _geometry_mistake("draw_shape taking S // 6 as the diameter: radius (S // 6) // 2.", half_radius=True)
draw_unsquared = _geometry_mistake("draw_shape comparing the squared distance with r, not r ** 2.", unsquared=True)


def draw_pure_colors(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape with pure (1, 0, 0)-style colors instead of COLOR_RGB."""
    return _noisy(_geometry(color, shape, position, image_size, rgb=_PURE_RGB[color]), noise_std, generator)


def draw_bgr(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape with the channels in B, G, R order."""
    return _noisy(_geometry(color, shape, position, image_size, rgb=COLOR_RGB[color][::-1]), noise_std, generator)


def draw_channels_last(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape returning (S, S, 3)."""
    return _noisy(_geometry(color, shape, position, image_size), noise_std, generator).permute(1, 2, 0)


def draw_uint8(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape returning 0-255 integers."""
    return (_geometry(color, shape, position, image_size) * 255).to(torch.uint8)


def draw_size_64(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape drawing 64 x 64 whatever image_size is."""
    return _noisy(_geometry(color, shape, position, 64), noise_std, generator)


def draw_noise_always_005(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape ignoring noise_std: always noise of std 0.05."""
    return _noisy(_geometry(color, shape, position, image_size), 0.05, generator)


def draw_no_clamp(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape without clamping the noisy image to [0, 1]."""
    return _geometry(color, shape, position, image_size) + noise_std * trusted.randn(
        (3, image_size, image_size), generator=generator)


def draw_global_rng(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape drawing the noise from the global generator (torch.randn_like), not from `generator`."""
    image = _geometry(color, shape, position, image_size)
    return (image + noise_std * torch.randn_like(image)).clamp(0, 1)


def draw_reseeds(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape calling torch.manual_seed(0) and drawing from the global generator."""
    _CPU_GENERATOR.manual_seed(0)  # what torch.manual_seed(0) does to CPU noise, leaving CUDA's generators alone
    image = _geometry(color, shape, position, image_size)
    return (image + noise_std * trusted.randn(image.shape)).clamp(0, 1)


def draw_noise_on_shape_only(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape adding noise to the shape's pixels only."""
    image = _geometry(color, shape, position, image_size)
    noise = noise_std * trusted.randn(image.shape, generator=generator)
    return (image + noise * (image > 0)).clamp(0, 1)


def draw_uniform_noise(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape with uniform noise in [0, noise_std) (torch.rand) instead of Gaussian."""
    image = _geometry(color, shape, position, image_size)
    return (image + noise_std * trusted.rand(image.shape, generator=generator)).clamp(0, 1)


def draw_std_as_variance(color, shape, position, image_size=64, noise_std=0.05, generator=None):
    """draw_shape taking noise_std as the variance: noise of std sqrt(noise_std)."""
    return _noisy(_geometry(color, shape, position, image_size), math.sqrt(noise_std), generator)


_DRAW_SHAPE = catalogue(
    "draw_shape",
    Mistake("x and y swapped: the center's row used as its column", draw_xy_swapped,
            "rows are y (top to bottom), columns are x; 'top-right' is row S // 4, column 3 * S // 4"),
    Mistake("the edge included (<= instead of <)", draw_edge_included,
            "a pixel belongs to the shape only when strictly inside: <, not <="),
    Mistake("radius image_size / 6, not rounded down", draw_float_radius,
            "the radius is image_size // 6, an integer"),
    Mistake("centers S / 4, S / 2, 3 * S / 4, not rounded down", draw_float_centers,
            "centers are integers: S // 4, S // 2 and 3 * S // 4"),
    Mistake("far centers 3 * (S // 4) instead of (3 * S) // 4", draw_floor_first,
            "the far center is 3 * S // 4, i.e. (3 * S) // 4: multiply before dividing"),
    Mistake("S // 6 taken as the diameter: radius (S // 6) // 2", draw_diameter,
            "S // 6 is the radius (the circle is 2 * (S // 6) wide); the square's half-side is S // 6 too"),
    Mistake("circle: squared distance compared with r, not r ** 2", draw_unsquared,
            "a pixel is in the circle when dx ** 2 + dy ** 2 < r ** 2: square the radius too"),
    Mistake("pure colors (1, 0, 0) instead of COLOR_RGB", draw_pure_colors,
            "use the seed's colors from COLOR_RGB, e.g. red is (1.0, 0.1, 0.1)"),
    Mistake("channels in B, G, R order", draw_bgr,
            "channel 0 is red, 1 green, 2 blue: COLOR_RGB[color] in that order"),
    Mistake("channels last (S, S, 3)", draw_channels_last,
            "PyTorch images are (C, H, W); only matplotlib wants (H, W, C), and plots permute for it"),
    Mistake("0-255 integers (uint8)", draw_uint8,
            "colors are fractions such as (1.0, 0.1, 0.1) in a float tensor, not 0-255 integers"),
    Mistake("image_size ignored: always 64 x 64", draw_size_64,
            "the image is 3 x image_size x image_size: use the image_size argument, not 64"),
    Mistake("noise_std ignored: always noise of std 0.05", draw_noise_always_005,
            "scale the noise by the noise_std argument (0 means no noise at all)"),
    Mistake("no clamp to [0, 1] after adding the noise", draw_no_clamp,
            "clamp after adding the noise: image.clamp(0, 1)"),
    Mistake("noise from the global generator, not `generator` (randn_like)", draw_global_rng,
            "draw the noise from the given generator: torch.randn(shape, generator=generator); randn_like ignores it"),
    Mistake("torch.manual_seed(0) inside draw_shape", draw_reseeds,
            "do not reseed inside draw_shape; use the generator you are given"),
    Mistake("noise on the shape only, not the background", draw_noise_on_shape_only,
            "add the noise to the whole image, background included"),
    Mistake("uniform noise (torch.rand) instead of Gaussian", draw_uniform_noise,
            "the noise is Gaussian with mean 0: noise_std * torch.randn(shape, generator=generator)"),
    Mistake("noise_std taken as the variance (std sqrt(noise_std))", draw_std_as_variance,
            "noise_std is the standard deviation: multiply standard normal noise by noise_std itself"),
)

_SIGNATURE = "draw_shape(color, shape, position, image_size=64, noise_std=0.05, generator=None)"


def _drawn(fn: Callable, seed: int, args: tuple, size: int, noise_std: float | None = None,
           generator_seed: int | None = None) -> object:
    """fn(*args, image_size=size, ...) with a fresh generator and the global generator seeded (then put back)."""
    kwargs: dict = {"image_size": size}
    if noise_std is not None:
        kwargs["noise_std"] = noise_std
    if generator_seed is not None:
        kwargs["generator"] = torch.Generator().manual_seed(generator_seed)
    with trusted.rng():
        _CPU_GENERATOR.manual_seed(seed)  # torch.manual_seed would also seed (and lazily set up) CUDA: slow
        return fn(*args, **kwargs)


def _same_image(received: object, theirs: object) -> bool:
    if not (isinstance(received, torch.Tensor) and isinstance(theirs, torch.Tensor)):
        return False
    if received.shape != theirs.shape or received.is_floating_point() != theirs.is_floating_point():
        return False
    return bool(allclose(received.detach().double().cpu(), theirs.detach().double().cpu(), atol=1e-5, rtol=0))


def _matches(received: object, *spec) -> Callable[[], list]:
    """The catalogue's mistakes whose drawing for this call (spec, as for _drawn) is the received one."""
    return lambda: matching(_DRAW_SHAPE, lambda f: _drawn(f, *spec), received, _same_image)


def _image(case: str, fn, seed: int, args: tuple, size: int, **kwargs) -> torch.Tensor:
    image = call(case, _drawn, fn, seed, args, size, hint=f"the signature is {_SIGNATURE}", **kwargs)
    matches = _matches(image, seed, args, size, *kwargs.values())
    if not isinstance(image, torch.Tensor):
        fail(case, f"a torch.Tensor of shape (3, {size}, {size})", f"{type(image).__name__}: {short(image)}",
             "build the image with torch, e.g. torch.zeros(3, image_size, image_size)", matches())
    if tuple(image.shape) == (size, size, 3):
        fail(case, f"shape (3, {size}, {size}): channels first", f"shape {tuple(image.shape)}: channels last",
             "PyTorch images are (C, H, W); only matplotlib wants (H, W, C), and plots permute for it", matches())
    if tuple(image.shape) != (3, size, size):
        fail(case, f"shape (3, {size}, {size})", f"shape {tuple(image.shape)}",
             "the image is 3 x image_size x image_size", matches())
    if not image.is_floating_point():
        fail(case, "a floating-point tensor with values in [0, 1]", f"dtype {image.dtype}",
             "colors are fractions such as (1.0, 0.1, 0.1) in a floating-point tensor", matches())
    return image.detach().float().cpu()


def _first_difference(received: torch.Tensor, expected: torch.Tensor) -> str:
    differ = (received - expected).abs() > 1e-6
    c, y, x = (int(v) for v in differ.nonzero()[0])
    return (f"{int(differ.sum())} of {differ.numel()} values differ; first at channel {c}, row {y}, column {x}: "
            f"expected {float(expected[c, y, x]):.3f}, received {float(received[c, y, x]):.3f}")


_GEOMETRY_SEED = 1234  # the global generator's seed for every noise-free call


def _geometry_case(fn, color: str, shape: str, position: str, size: int) -> None:
    case = f"draw_shape({color!r}, {shape!r}, {position!r}, image_size={size}, noise_std=0)"
    args = (color, shape, position)
    image = _image(case, fn, _GEOMETRY_SEED, args, size, noise_std=0.0)
    expected = _geometry(color, shape, position, size)
    if allclose(image, expected, atol=1e-6):
        return
    found = _matches(image, _GEOMETRY_SEED, args, size, 0.0)()
    received = _first_difference(image, expected)
    allowed = trusted.tensor([0.0, *COLOR_RGB[color]]).view(1, -1)
    other = int(((image.reshape(-1, 1) - allowed).abs() > 1e-6).all(1).sum())
    if other:
        received += f"; {other} values are neither 0 nor one of {color}'s {COLOR_RGB[color]}"
    hint = ("with noise_std=0 there is no noise; the shape: radius S // 6, center (row, column) at S // 4, S // 2 "
            "or 3 * S // 4, pixels strictly inside (<), color COLOR_RGB[color] on a 0 background")
    if equal(image.abs().sum(0) > 0, expected.sum(0) > 0):
        hint = f"the lit pixels are the expected ones, their values differ: {color} is {COLOR_RGB[color]} and the background 0"
    fail(case, "the seed's drawing, exactly", received, hint, found)


def _noise_stats(case: str, image: torch.Tensor, clean: torch.Tensor, noise_std: float, matches) -> None:
    if float(image.min()) < 0 or float(image.max()) > 1:
        fail(case, "values in [0, 1]", f"values from {float(image.min()):.3f} to {float(image.max()):.3f}",
             "every value stays in [0, 1]: clamp the noisy image, image.clamp(0, 1)", matches())
    inside = (clean > 0.05) & (clean < 0.95)  # color values 0.1 and 0.8: noise never reaches 0 or 1 there
    residual = (image - clean)[inside]
    std, mean = float(residual.std()), float(residual.mean())
    if not 0.8 * noise_std <= std <= 1.2 * noise_std or abs(mean) > 0.25 * noise_std:
        fail(case, f"Gaussian noise of mean 0 and std {noise_std} on every pixel",
             f"noise of mean {mean:.4f} and std {std:.4f} inside the shape",
             "the noise is noise_std * standard normal noise on every pixel, then clamped", matches())
    background = image[clean == 0]
    above = float((background > 0).float().mean())
    if not 0.35 <= above <= 0.65:
        fail(case, "noise on the background too: about half of its pixels above 0 after clamping",
             f"{above:.0%} of the background pixels above 0",
             "the background pixels, like the shape's, get noise_std * standard normal noise", matches())


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

    square = ("green", "square", "top-left")
    case = "draw_shape('green', 'square', 'top-left', noise_std=0.02, generator=torch.Generator().manual_seed(7))"
    noisy = _image(case, draw_shape, 11, square, 64, noise_std=0.02, generator_seed=7)
    _noise_stats(case, noisy, _geometry(*square, 64), 0.02, _matches(noisy, 11, square, 64, 0.02, 7))

    case = "draw_shape('green', 'circle', 'center', generator=torch.Generator().manual_seed(3)): default noise_std 0.05"
    circle = ("green", "circle", "center")
    default = _image(case, draw_shape, 12, circle, 64, generator_seed=3)
    _noise_stats(case, default, _geometry(*circle, 64), 0.05, _matches(default, 12, circle, 64, None, 3))

    case = "two calls with generators seeded alike (7 and 7)"
    again = _image(case, draw_shape, 13, square, 64, noise_std=0.02, generator_seed=7)
    if not equal(again, noisy):
        fail(case, "the same image twice", f"images that differ by up to {float((again - noisy).abs().max()):.3f}",
             "the noise comes from the generator passed in: torch.randn(shape, generator=generator)",
             _matches(again, 13, square, 64, 0.02, 7)())
    case = "two calls with generators seeded differently (7 and 8)"
    other = _image(case, draw_shape, 14, square, 64, noise_std=0.02, generator_seed=8)
    if equal(other, noisy):
        fail(case, "different noise", "the same image",
             "the noise comes from the generator passed in: a generator seeded 8 gives other noise than one seeded 7",
             _matches(other, 14, square, 64, 0.02, 8)())
    passed("draw_shape", "all 30 configurations match the seed's geometry at sizes 64, 48 and 30; "
           "noise has the right spread, stays in [0, 1] and follows the generator")


# -- make_qa --------------------------------------------------------------------------------------

_KEYS = ("question_tokens", "answer_tokens", "caption_tokens")


def _expected_qa(color: str, shape: str, position: str, question_type: str) -> dict[str, list[int]]:
    answer = {"color": color, "shape": shape, "position": position}[question_type]
    return {"question_tokens": [VOCAB[w] for w in QUESTIONS[question_type].split()],
            "answer_tokens": [VOCAB[answer]],
            "caption_tokens": [VOCAB[color], VOCAB[shape]]}


def _qa_with(**changes: Callable) -> Callable:
    """make_qa with some fields computed otherwise: changes[key](color, shape, position, question_type, record)."""

    def make_qa(color, shape, position, question_type):
        record = _expected_qa(color, shape, position, question_type)
        return {key: changes[key](color, shape, position, question_type, record) if key in changes else value
                for key, value in record.items()}

    return make_qa


qa_end_in_answer = _qa_with(answer_tokens=lambda c, s, p, q, r: r["answer_tokens"] + [END])
qa_start_in_question = _qa_with(question_tokens=lambda c, s, p, q, r: [START] + r["question_tokens"])
qa_caption_swapped = _qa_with(caption_tokens=lambda c, s, p, q, r: [VOCAB[s], VOCAB[c]])
qa_caption_with_position = _qa_with(caption_tokens=lambda c, s, p, q, r: [VOCAB[c], VOCAB[s], VOCAB[p]])
qa_int_answer = _qa_with(answer_tokens=lambda c, s, p, q, r: r["answer_tokens"][0])
qa_always_color = _qa_with(answer_tokens=lambda c, s, p, q, r: [VOCAB[c]])
qa_answer_is_type = _qa_with(answer_tokens=lambda c, s, p, q, r: [VOCAB[q]])
qa_where_is = _qa_with(question_tokens=lambda c, s, p, q, r: [VOCAB[w] for w in "where is ?".split()]
                       if q == "position" else r["question_tokens"])
qa_no_question_mark = _qa_with(question_tokens=lambda c, s, p, q, r: r["question_tokens"][:-1])
qa_what_position = _qa_with(question_tokens=lambda c, s, p, q, r: [VOCAB[w] for w in f"what {q} ?".split()])


def qa_words(color, shape, position, question_type):
    """make_qa returning the words themselves instead of their token ids."""
    answer = {"color": color, "shape": shape, "position": position}[question_type]
    return {"question_tokens": QUESTIONS[question_type].split(), "answer_tokens": [answer],
            "caption_tokens": [color, shape]}


def qa_tensors(color, shape, position, question_type):
    """make_qa returning tensors instead of lists."""
    return {k: trusted.tensor(v) for k, v in _expected_qa(color, shape, position, question_type).items()}


def qa_short_keys(color, shape, position, question_type):
    """make_qa with the keys 'question', 'answer', 'caption'."""
    record = _expected_qa(color, shape, position, question_type)
    return {key.removesuffix("_tokens"): value for key, value in record.items()}


_MAKE_QA = catalogue(
    "make_qa",
    Mistake("<end> appended to the answer", qa_end_in_answer,
            "no <start> or <end> here: the batch builders add them (notebooks 05 and 06)"),
    Mistake("<start> put before the question", qa_start_in_question,
            "no <start> or <end> here: the batch builders add them (notebooks 05 and 06)"),
    Mistake("caption '<shape> <color>' instead of '<color> <shape>'", qa_caption_swapped,
            "the caption is '<color> <shape>', color first, e.g. 'red circle'"),
    Mistake("the position in the caption too", qa_caption_with_position,
            "the caption is the two words '<color> <shape>', e.g. 'red circle'; the position is asked, not captioned"),
    Mistake("the answer as an int, not a list", qa_int_answer,
            "even a one-word answer is a list of token ids, e.g. [10]"),
    Mistake("every question answered with the color", qa_always_color,
            "answer each question type with its own value: the color, the shape or the position"),
    Mistake("the question type's word as the answer", qa_answer_is_type,
            "a color question is answered with the color itself ('red'), not the word 'color'"),
    Mistake("'where is ?' for the position question ('it' missing)", qa_where_is,
            "the position question is 'where is it ?': four tokens"),
    Mistake("the questions without their '?'", qa_no_question_mark,
            "'?' is a word of every question: 'what color ?' is three tokens"),
    Mistake("'what position ?' as the position question", qa_what_position,
            "the position question is 'where is it ?'; 'position' is not in VOCAB"),
    Mistake("words instead of token ids", qa_words,
            "token ids, not words: look each word up, VOCAB['red'] is 10"),
    Mistake("tensors instead of lists", qa_tensors,
            "return plain Python lists; the batch builders turn them into tensors"),
    Mistake("keys 'question', 'answer', 'caption'", qa_short_keys,
            "the later notebooks read 'question_tokens', 'answer_tokens' and 'caption_tokens'; keep the seed's key names"),
)


def _plain(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return ("tensor", str(value.dtype), value.tolist())
    return repr(value)


def _qa_outcome(make_qa: Callable, args: tuple) -> tuple:
    """What make_qa(*args) gives, comparable with ==: its error, or its fields (extra keys left out when all are there)."""
    try:
        with quiet():
            record = make_qa(*args)
    except Exception as error:  # noqa: BLE001 - an error is an outcome too
        return ("raised", raised(error))
    return ("returned", _qa_fields(record))


def _qa_fields(record: object) -> object:
    if not isinstance(record, Mapping):
        return _plain(record)
    keys = set(_KEYS) if set(_KEYS) <= set(record) else set(record)
    return tuple(sorted((repr(key), _plain(record[key])) for key in keys))


def _qa_hint(key: str, received: list[int], expected: list[int], question_type: str) -> str:
    if START in received or END in received:
        return f"received holds {words([t for t in received if t in (START, END)])}: the batch builders add those (05, 06)"
    if key == "caption_tokens":
        return "the caption is '<color> <shape>', color first, e.g. 'red circle'"
    if key == "answer_tokens":
        return f"a {question_type} question is answered with the {question_type}"
    return f"the {question_type} question is {QUESTIONS[question_type]!r}; look each word up in VOCAB"


def _same_outcome(received: list, theirs: list) -> bool:
    return received == theirs


def _qa_matches(make_qa: Callable, args: tuple) -> list:
    """Run only on a failure: the mistakes that give what make_qa gives for this configuration's 3 questions."""
    config = [(*args[:3], question_type) for question_type in QUESTION_TYPES]
    return matching(_MAKE_QA, lambda f: [_qa_outcome(f, a) for a in config],
                    [_qa_outcome(make_qa, a) for a in config], _same_outcome)


def _qa_case(make_qa: Callable, args: tuple) -> None:
    color, shape, position, question_type = args
    case = f"make_qa({color!r}, {shape!r}, {position!r}, {question_type!r})"

    try:
        record = call(case, make_qa, *args, hint="every word of the question, the answer and the caption is in VOCAB")
    except CheckError:
        found = _qa_matches(make_qa, args)
        if not found:
            raise
        fail(case, "no exception", _qa_outcome(make_qa, args)[1], matches=found)
    if not isinstance(record, Mapping):
        fail(case, "a dict", f"{type(record).__name__}: {short(record)}",
             "return {'question_tokens': [...], 'answer_tokens': [...], 'caption_tokens': [...]}",
             _qa_matches(make_qa, args))
    missing = [k for k in _KEYS if k not in record]
    if missing:
        fail(case, f"keys {list(_KEYS)}", f"keys {list(record)}",
             f"the later notebooks read {missing[0]!r}; keep the seed's key names",
             _qa_matches(make_qa, args))
    expected = _expected_qa(*args)
    for key in _KEYS:
        value = record[key]
        where = f"{case}[{key!r}]"
        if isinstance(value, torch.Tensor):
            fail(where, f"a list of ints {expected[key]}", short(value),
                 "a plain Python list of ints; the batch builders turn them into tensors",
                 _qa_matches(make_qa, args))
        if isinstance(value, int) and not isinstance(value, bool):
            fail(where, f"a list {expected[key]}", f"the int {value}",
                 "a list of token ids, even for a one-word answer: e.g. [10]",
                 _qa_matches(make_qa, args))
        if not isinstance(value, list) or not all(type(t) is int for t in value):
            are_words = isinstance(value, list) and value and all(isinstance(t, str) for t in value)
            fail(where, f"a list of ints {expected[key]}", short(value),
                 "token ids, not words: look each word up, VOCAB['red'] is 10" if are_words
                 else "a list of Python ints (token ids)",
                 _qa_matches(make_qa, args))
        if value != expected[key]:
            fail(where, f"{expected[key]} ({words(expected[key])})", f"{value} ({words(value)})",
                 _qa_hint(key, value, expected[key], question_type),
                 _qa_matches(make_qa, args))


@register
def check_make_qa(make_qa) -> None:
    """Check make_qa(color, shape, position, question_type) -> dict of token-id lists."""
    count = 0
    for color in COLORS:
        for shape in SHAPES:
            for position in POSITIONS:
                for question_type in QUESTION_TYPES:
                    _qa_case(make_qa, (color, shape, position, question_type))
                    count += 1
    passed("make_qa", f"question, answer and caption token ids right for all {count} "
           "(configuration, question type) pairs")
