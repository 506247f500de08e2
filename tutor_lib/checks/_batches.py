"""Comparing whole token batches, for the checks of the batch builders (05, 06 and 08).

A builder returns (input_ids, labels). A wrong batch is compared exactly (dtype, shape, values)
with what each catalogue mistake returns on fresh copies of the same arguments, and a mutated
argument with what each mistake leaves behind; `first_difference` states where two rows differ.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Sequence

import torch

from ..vocab import END, IGNORE_INDEX, PAD, START
from . import trusted
from ._common import fail, short
from ._mistakes import Mistake, matching


def padded(rows: Sequence[Sequence[int]], value: int, width: int | None = None, left: bool = False) -> torch.Tensor:
    """Rows padded with `value` to `width` (default: the longest row) -> a (B, width) long tensor."""
    width = max(len(r) for r in rows) if width is None else width
    fill = [[value] * (width - len(r)) for r in rows]
    return trusted.tensor([f + list(r) if left else list(r) + f for r, f in zip(rows, fill)], dtype=torch.long)


def pair(ids_rows, label_rows, id_pad: int = PAD, label_pad: int = IGNORE_INDEX, left: bool = False):
    """(input_ids, labels): both padded to the longest row of either, inputs with id_pad, labels with label_pad."""
    width = max(len(r) for r in [*ids_rows, *label_rows])
    return padded(ids_rows, id_pad, width, left), padded(label_rows, label_pad, width, left)


def instruction_inputs(question: list[int], answer: list[int]) -> list[int]:
    """One input row of the instruction layout: <start> + question + answer."""
    return [START, *question, *answer]


def instruction_labels(question: list[int], answer: list[int]) -> list[int]:
    """Its labels: -100 for each question token (the positions that predict them), then answer + <end>."""
    return [IGNORE_INDEX] * len(question) + [*answer, END]


def instruction_rows(questions, answers, ids_of=instruction_inputs, labels_of=instruction_labels, **padding):
    """(input_ids, labels) with one row per (question, answer), built by ids_of / labels_of and padded as pair()."""
    return pair([ids_of(q, a) for q, a in zip(questions, answers)], [labels_of(q, a) for q, a in zip(questions, answers)],
                **padding)


def same_output(received: object, theirs: object) -> bool:
    """Exactly the same value: the same types, and for tensors the same dtype, shape and values."""
    if isinstance(received, torch.Tensor) or isinstance(theirs, torch.Tensor):
        return (isinstance(received, torch.Tensor) and isinstance(theirs, torch.Tensor)
                and received.dtype == theirs.dtype and received.shape == theirs.shape
                and bool(trusted.equal(received.detach().cpu(), theirs.detach().cpu())))
    if isinstance(received, (list, tuple)):
        return (type(received) is type(theirs) and len(received) == len(theirs)
                and all(same_output(r, t) for r, t in zip(received, theirs)))
    return type(received) is type(theirs) and received == theirs


def same_batch(received: object, theirs: object) -> bool:
    """The same (input_ids, labels), whether returned as a tuple or a list."""
    if not (isinstance(received, (tuple, list)) and isinstance(theirs, (tuple, list))):
        return False
    return same_output(tuple(received), tuple(theirs))


def batch_matches(mistakes, args: tuple, result: object) -> list[Mistake]:
    """The mistakes that return exactly `result` on fresh copies of `args`."""
    return matching(mistakes, lambda fn: fn(*copy.deepcopy(args)), result, same_batch)


def mutation_matches(mistakes, args: tuple, after: object) -> list[Mistake]:
    """The mistakes that leave fresh copies of `args` exactly as the student's function left them (`after`)."""
    def arguments_after(fn: Callable) -> tuple:
        given = copy.deepcopy(args)
        fn(*given)
        return given

    return matching(mistakes, arguments_after, after, operator.eq)


def first_difference(got: list[int], want: list[int]) -> str:
    """An observation: where two token rows first differ."""
    t = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    g = got[t] if t < len(got) else "nothing"
    w = want[t] if t < len(want) else "nothing"
    return f"the first difference is at position {t}: {w} expected, {g} received"


def expect_pair(case: str, result: object, shape: tuple[int, int], shape_hint: str, matches=()) -> tuple:
    """Fail (naming `matches`) unless result is (input_ids, labels), two long tensors of the given shape."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        fail(case, "a tuple (input_ids, labels)", short(result), "end the function with `return input_ids, labels`",
             matches)
    for what, value in zip(("input_ids", "labels"), result):
        if not isinstance(value, torch.Tensor):
            fail(f"{case}: {what}", "a torch.Tensor", f"{type(value).__name__}: {short(value)}",
                 "build it with torch.tensor(rows, dtype=torch.long)", matches)
        if value.dtype != torch.long:
            fail(f"{case}: {what}", "dtype torch.int64 (long)", f"dtype {value.dtype}",
                 "token ids and labels are integers: torch.tensor(rows, dtype=torch.long); "
                 "F.cross_entropy and nn.Embedding need long tensors", matches)
        if tuple(value.shape) != tuple(shape):
            fail(f"{case}: {what}", f"shape {tuple(shape)}", f"shape {tuple(value.shape)}", shape_hint, matches)
    return tuple(t.detach().cpu() for t in result)
