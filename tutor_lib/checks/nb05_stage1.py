"""Checks for notebook 05_stage1: build_caption_batch and train_stage1.

build_caption_batch is compared token for token with the layout of the exercise on batches of
equal and of different lengths, and must leave the caller's lists alone. When a batch is wrong,
the catalogue of mistakes below runs on the same captions and the message names every mistake
whose (input_ids, labels) are exactly the student's (see _mistakes.py); otherwise it says only
what was expected. train_stage1 runs on a tiny model (see _stages.py): with lr=0 its reported
loss must be the masked mean loss to 1e-4, it returns one value per epoch, and only the
projector's weights may change.
"""

from __future__ import annotations

import copy

import torch

from ..vocab import END, IGNORE_INDEX, PAD, START, VOCAB
from ._batches import batch_matches, expect_pair, first_difference, mutation_matches, pair, same_batch
from ._common import call, fail, passed, register
from ._mistakes import Mistake, catalogue
from ._stages import check_training, row_text

__all__ = ["check_build_caption_batch", "check_train_stage1"]


# -- build_caption_batch: the reference and its catalogue of mistakes ---------------------------------

def _expected_caption_batch(captions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return pair([[START, *c] for c in captions], [[*c, END] for c in captions])


def caption_unshifted(captions):
    """labels = <start> + caption, the inputs themselves (padded with -100)."""
    return pair([[START, *c] for c in captions], [[START, *c] for c in captions])


def caption_labels_are_inputs(captions):
    """labels = input_ids.clone(): padding (0) included."""
    ids, _ = _expected_caption_batch(captions)
    return ids, ids.clone()


def caption_no_end(captions):
    return pair([[START, *c] for c in captions], [list(c) for c in captions])


def caption_shifted_twice(captions):
    """labels = sequence[2:]: the label at t is the token two after input t."""
    return pair([[START, *c] for c in captions], [[*c[1:], END] for c in captions])


def caption_labels_padded_with_pad(captions):
    return pair([[START, *c] for c in captions], [[*c, END] for c in captions], label_pad=PAD)


def caption_inputs_padded_with_ignore(captions):
    return pair([[START, *c] for c in captions], [[*c, END] for c in captions], id_pad=IGNORE_INDEX)


def caption_padding_swapped(captions):
    return pair([[START, *c] for c in captions], [[*c, END] for c in captions], id_pad=IGNORE_INDEX, label_pad=PAD)


def caption_end_in_inputs(captions):
    """The whole sequence <start> + caption + <end> as input, labels caption + <end>."""
    return pair([[START, *c, END] for c in captions], [[*c, END] for c in captions])


def caption_no_start(captions):
    return pair([list(c) for c in captions], [[*c, END] for c in captions])


def caption_swapped(captions):
    """input_ids = sequence[1:], labels = sequence[:-1]."""
    return pair([[*c, END] for c in captions], [[START, *c] for c in captions])


def caption_padded_left(captions):
    return pair([[START, *c] for c in captions], [[*c, END] for c in captions], left=True)


def caption_appends_end(captions):
    """caption.append(END) on the caller's lists, then the right batch."""
    for c in captions:
        c.append(END)
    return pair([[START, *c[:-1]] for c in captions], [list(c) for c in captions])


CAPTION_MISTAKES = catalogue(
    "build_caption_batch",
    Mistake("labels not shifted: labels = <start> + caption", caption_unshifted,
            "the label at position t is the token *after* input t: labels are caption + <end>"),
    Mistake("labels are a copy of input_ids", caption_labels_are_inputs,
            "the label at position t is the token *after* input t: labels are caption + <end>, padded with -100"),
    Mistake("labels shifted twice: label t is the token two after input t", caption_shifted_twice,
            "shift once: label t is the token right after input t, so labels are caption + <end>"),
    Mistake("<end> missing from the labels", caption_no_end,
            "labels are caption + <end>: <end> is how the model learns to stop"),
    Mistake("labels padded with PAD (0) instead of -100", caption_labels_padded_with_pad,
            "pad the labels with IGNORE_INDEX (-100), so that padding carries no loss; pad input_ids with PAD (0)"),
    Mistake("input_ids padded with -100 instead of PAD (0)", caption_inputs_padded_with_ignore,
            "pad input_ids with PAD (0): -100 is a label value, and nn.Embedding cannot look it up"),
    Mistake("padding values swapped: input_ids padded with -100, labels with PAD (0)", caption_padding_swapped,
            "pad input_ids with PAD (0) and labels with IGNORE_INDEX (-100)"),
    Mistake("<end> in the inputs: input_ids = <start> + caption + <end>", caption_end_in_inputs,
            "<end> is only a label: input_ids are <start> + caption (the sequence without its last token)"),
    Mistake("<start> missing from the inputs", caption_no_start,
            "every input row starts with <start> (id 1), then the caption"),
    Mistake("input_ids and labels swapped", caption_swapped,
            "input_ids = sequence[:-1] (<start> + caption), labels = sequence[1:] (caption + <end>)"),
    Mistake("rows padded on the left", caption_padded_left,
            "pad on the right: each row starts at position 0, padding comes after it"),
    Mistake("the caller's captions changed: caption.append(END)", caption_appends_end,
            "do not change the caller's lists (caption.append(END) does): build new ones, e.g. caption + [END]"),
)


def _caption_case(fn, case: str, captions: list[list[int]]) -> None:
    original = copy.deepcopy(captions)
    result = call(case, fn, captions, hint="build_caption_batch(captions) takes a list of token lists")
    if captions != original:
        fail(f"{case}: the argument afterwards", original, captions,
             "do not change the caller's lists: build new ones, e.g. caption + [END]",
             mutation_matches(CAPTION_MISTAKES, (original,), (captions,)))
    expected = _expected_caption_batch(original)
    if same_batch(result, expected):
        return  # the passing path runs no catalogue
    matches = batch_matches(CAPTION_MISTAKES, (original,), result)
    expected_ids, expected_labels = expected
    longest = max(len(c) for c in captions)
    ids, labels = expect_pair(
        case, result, tuple(expected_ids.shape),
        f"(batch, longest caption + 1) = ({len(captions)}, {longest + 1}): inputs are <start> + caption and labels "
        "caption + <end>, both padded to the same length", matches)
    for what, got, want, layout in (
            ("input_ids", ids, expected_ids, "input_ids are <start> + caption, padded on the right with PAD (0)"),
            ("labels", labels, expected_labels, "labels are caption + <end>, padded on the right with IGNORE_INDEX "
                                                "(-100): label t is the token after input t")):
        for i in range(len(want)):
            g, w = got[i].tolist(), want[i].tolist()
            if g != w:
                fail(f"{case}: {what}[{i}] for caption {captions[i]}", row_text(w), row_text(g),
                     f"{layout}; {first_difference(g, w)}", matches)


@register
def check_build_caption_batch(build_caption_batch) -> None:
    """Inputs <start> + caption padded with PAD, labels caption + <end> padded with -100, for several batches."""
    v = VOCAB
    cases = [
        ("build_caption_batch([[red, circle]])", [[v["red"], v["circle"]]]),
        ("build_caption_batch of four two-word captions",
         [[v["green"], v["square"]], [v["blue"], v["circle"]], [v["red"], v["square"]], [v["green"], v["circle"]]]),
        ("build_caption_batch of captions of lengths 2, 1 and 3 (padding)",
         [[v["green"], v["square"]], [v["blue"]], [v["red"], v["circle"], v["center"]]]),
        ("build_caption_batch of captions of lengths 1 and 4 (padding)",
         [[v["red"]], [v["blue"], v["square"], v["top-left"], v["blue"]]]),
    ]
    for case, captions in cases:
        _caption_case(build_caption_batch, case, captions)
    passed("build_caption_batch", f"inputs and labels right for {len(cases)} batches, padding included")


@register
def check_train_stage1(train_stage1) -> None:
    """Tiny-model runs: lr=0 loss equals the masked mean, one loss per epoch, only the projector changes."""
    summary = check_training("train_stage1", train_stage1, stage=1,
                             defaults={"num_epochs": 30, "batch_size": 32, "lr": 1e-3})
    passed("train_stage1", summary)
