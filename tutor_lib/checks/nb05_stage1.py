"""Checks for notebook 05_stage1: build_caption_batch and train_stage1.

build_caption_batch is compared token for token with the layout of the exercise on batches of
equal and of different lengths, and must leave the caller's lists alone. train_stage1 runs on a
tiny model (see _stages.py): with lr=0 its reported loss must be the masked mean loss to 1e-4,
it returns one value per epoch, and only the projector's weights may change.
"""

from __future__ import annotations

import copy

import torch

from ..vocab import END, IGNORE_INDEX, PAD, START, VOCAB
from . import trusted
from ._common import call, fail, passed, register
from ._stages import check_training, expect_batch_tensors, first_bad_row, row_text

__all__ = ["check_build_caption_batch", "check_train_stage1"]


def _expected_caption_batch(captions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(c) for c in captions) + 1
    ids = [[START, *c] + [PAD] * (length - len(c) - 1) for c in captions]
    labels = [[*c, END] + [IGNORE_INDEX] * (length - len(c) - 1) for c in captions]
    return trusted.tensor(ids, dtype=torch.long), trusted.tensor(labels, dtype=torch.long)


def _inputs_hint(got: list[int], caption: list[int]) -> str:
    if not got or got[0] != START:
        return "every input row starts with <start> (id 1), then the caption"
    if END in got:
        return "<end> belongs to the labels only: inputs are <start> + caption"
    if IGNORE_INDEX in got:
        return "pad inputs with PAD (0); -100 is a label value, and nn.Embedding cannot look it up"
    if got[1 : len(caption) + 1] == caption:
        return "pad the inputs on the right with PAD (0)"
    return "inputs are <start> + caption, padded on the right with PAD (0) to the longest caption + 1"


def _labels_hint(got: list[int], expected_ids: list[int], caption: list[int]) -> str:
    if got == expected_ids:
        return "labels not shifted: the label at position t is the token *after* input t, so labels are caption + <end>"
    if got and got[0] == START:
        return "labels start with the first caption token: <start> is only ever an input"
    if END not in got:
        return "<end> missing: labels are caption + <end>, which is how the model learns to stop"
    if got[: len(caption) + 1] == [*caption, END]:
        return "pad labels with IGNORE_INDEX (-100), not PAD (0), so padding carries no loss"
    return "labels are caption + <end>, padded on the right with IGNORE_INDEX (-100)"


def _caption_case(fn, case: str, captions: list[list[int]]) -> None:
    original = copy.deepcopy(captions)
    result = call(case, fn, captions, hint="build_caption_batch(captions) takes a list of token lists")
    if captions != original:
        fail(f"{case}: the argument afterwards", original, captions,
             "do not change the caller's lists (caption.append(END) does): build new ones, e.g. caption + [END]")
    expected_ids, expected_labels = _expected_caption_batch(captions)
    longest = max(len(c) for c in captions)
    ids, labels = expect_batch_tensors(
        case, result, tuple(expected_ids.shape),
        f"(batch, longest caption + 1) = ({len(captions)}, {longest + 1}): inputs are <start> + caption and labels "
        "caption + <end>, both padded to the same length")
    i = first_bad_row(ids, expected_ids)
    if i >= 0:
        fail(f"{case}: input_ids[{i}] for caption {captions[i]}", row_text(expected_ids[i].tolist()),
             row_text(ids[i].tolist()), _inputs_hint(ids[i].tolist(), captions[i]))
    i = first_bad_row(labels, expected_labels)
    if i >= 0:
        fail(f"{case}: labels[{i}] for caption {captions[i]}", row_text(expected_labels[i].tolist()),
             row_text(labels[i].tolist()), _labels_hint(labels[i].tolist(), expected_ids[i].tolist(), captions[i]))


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
