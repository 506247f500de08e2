"""Checks for notebook 08_multiturn: build_conversation_batch, the multi-turn label mask.

A wrong batch is diagnosed by matching: the catalogue below runs on the same conversations and the
message names every mistake whose (input_ids, labels) are exactly the student's (see _mistakes.py);
with no match it gives the layout and where the first difference is.
"""

from __future__ import annotations

import copy
import functools

import torch

from ..batching import build_conversation_batch as _reference
from ..batching import build_instruction_batch as _one_turn
from ..vocab import END, EXTENDED_VOCAB, IGNORE_INDEX, PAD, START, encode
from ._batches import batch_matches, first_difference, mutation_matches, pair
from ._common import call, fail, passed, register, short
from ._mistakes import Mistake, catalogue
from ._stages import words

__all__ = ["check_build_conversation_batch", "expect_batch"]


def _q(text: str) -> list[int]:
    return encode(text, EXTENDED_VOCAB)


def _sequence(turns) -> tuple[list[int], list[bool], list[int]]:
    """The full token sequence of one conversation, which tokens are supervised, and which turn each belongs to."""
    tokens, supervised, turn_of = [START], [False], [0]
    for k, (question, answer) in enumerate(turns, start=1):
        tokens += list(question) + list(answer) + [END]
        supervised += [False] * len(question) + [True] * (len(answer) + 1)
        turn_of += [k] * (len(question) + len(answer) + 1)
    return tokens, supervised, turn_of


# -- the catalogue: the reference with one mistake each ----------------------------------------------

def _layout(turns, *, supervise_question=False, last_answer_only=False, supervise_end=True, supervise_last_end=True,
            end_between_turns=True, start_before_turns=False) -> tuple[list[int], list[bool]]:
    """The full sequence of one conversation and which of its tokens are supervised (the reference by default)."""
    tokens, supervised = [START], [False]
    for k, (question, answer) in enumerate(turns):
        last = k == len(turns) - 1
        if start_before_turns and k:
            tokens, supervised = tokens + [START], supervised + [False]
        tokens += [*question, *answer]
        supervised += [supervise_question] * len(question) + [last or not last_answer_only] * len(answer)
        if last or end_between_turns:
            tokens.append(END)
            supervised.append(supervise_end and (not last or supervise_last_end) and (last or not last_answer_only))
    return tokens, supervised


def _batch(conversations, *, shift: int = 1, keep_final_end: bool = False, id_pad: int = PAD,
           label_pad: int = IGNORE_INDEX, dtype: torch.dtype = torch.long, **layout):
    """inputs = sequence[:-1], labels = the supervised tokens of sequence[1:], each row padded on the right."""
    inputs, labels = [], []
    for turns in conversations:
        tokens, supervised = _layout(turns, **layout)
        targets = [t if s else IGNORE_INDEX for t, s in zip(tokens, supervised)]
        if keep_final_end:
            inputs.append(tokens)
            labels.append(targets[1:] + [IGNORE_INDEX])
        else:
            inputs.append(tokens[:-1])
            labels.append((targets[shift:] + [IGNORE_INDEX] * (shift - 1))[: len(tokens) - 1])
    ids, label_ids = pair(inputs, labels, id_pad, label_pad)
    return ids.to(dtype), label_ids.to(dtype)


def conversation_padded_before_shifting(conversations):
    """Pads the full sequences, then shifts: shorter rows keep their final <end> in the input."""
    rows = [_layout(turns) for turns in conversations]
    targets = [[t if s else IGNORE_INDEX for t, s in zip(*row)] for row in rows]
    ids, label_ids = pair([tokens for tokens, _ in rows], targets)
    return ids[:, :-1], label_ids[:, 1:]


def conversation_one_turn_rows_joined(conversations):
    """Each turn laid out as a one-turn batch row (<start> q a / -100.. a <end>), the rows joined end to end."""
    inputs = [[t for q, a in turns for t in (START, *q, *a)] for turns in conversations]
    labels = [[t for q, a in turns for t in ([IGNORE_INDEX] * len(q) + [*a, END])] for turns in conversations]
    return pair(inputs, labels)


def conversation_appends_end(conversations):
    """answer.append(END) on the caller's lists, then the right batch."""
    for turns in conversations:
        for _question, answer in turns:
            answer.append(END)
    return _batch([[(q, a[:-1]) for q, a in turns] for turns in conversations])


CONVERSATION_MISTAKES = catalogue(
    "build_conversation_batch",
    Mistake("question tokens supervised: the labels are every next token",
            functools.partial(_batch, supervise_question=True),
            "a position that predicts a question token gets IGNORE_INDEX: the model learns to answer, not to ask"),
    Mistake("<end> missing between turns: only the last answer has one",
            functools.partial(_batch, end_between_turns=False),
            "every answer is followed by <end>, in the input too, so the model sees where a turn stops"),
    Mistake("<end> not supervised", functools.partial(_batch, supervise_end=False),
            "the <end> after every answer is a label: it is how the model learns to stop after each answer"),
    Mistake("the last <end> not supervised", functools.partial(_batch, supervise_last_end=False),
            "the final <end> is a label too: it is how the model learns to stop after its answer"),
    Mistake("the final <end> kept in the input", functools.partial(_batch, keep_final_end=True),
            "the final <end> is only a label: the input stops after the last answer (sequence[:-1])"),
    Mistake("labels not shifted: labels[t] is the supervised token at t, not at t + 1",
            functools.partial(_batch, shift=0),
            "labels[t] is the token that FOLLOWS input_ids[t]: labels = sequence[1:] while input_ids = "
            "sequence[:-1]"),
    Mistake("labels shifted twice: labels[t] is the token two after input t", functools.partial(_batch, shift=2),
            "shift once: labels = sequence[1:] while input_ids = sequence[:-1]"),
    Mistake("labels padded with PAD (0) instead of -100", functools.partial(_batch, label_pad=PAD),
            f"pad labels with IGNORE_INDEX ({IGNORE_INDEX}): a PAD label would train the model to predict <pad>"),
    Mistake("input_ids padded with -100 instead of PAD (0)", functools.partial(_batch, id_pad=IGNORE_INDEX),
            f"pad input_ids on the right with PAD ({PAD}): -100 is a label value, and nn.Embedding cannot look it up"),
    Mistake("only the last answer supervised", functools.partial(_batch, last_answer_only=True),
            "every answer of the conversation and its <end> are labels, not only the last one"),
    Mistake("<start> before every turn", functools.partial(_batch, start_before_turns=True),
            "<start> appears once, at the very beginning; turns are separated by <end>"),
    Mistake("one-turn rows joined: <start> instead of <end> between turns", conversation_one_turn_rows_joined,
            "one sequence per conversation: <start> q1 a1 <end> q2 a2 <end> ... qn an as input; <start> only once"),
    Mistake("padded before shifting: shorter rows keep their final <end> in the input",
            conversation_padded_before_shifting,
            "cut each row first (input = sequence[:-1], labels = sequence[1:]), then pad"),
    Mistake("int32 tensors instead of int64 (long)", functools.partial(_batch, dtype=torch.int32),
            "token ids and labels are torch.long: torch.tensor(rows, dtype=torch.long)"),
    Mistake("the caller's answers changed: answer.append(END)", conversation_appends_end,
            "build new lists (e.g. [START] + question + answer) instead of question += ... or .append on the input"),
)


def _first_difference(conversations, b: int, got: list[int], want: list[int], predicts: bool) -> str:
    """An observation: where row b first differs, and which turn the token there (or the one it predicts) is of."""
    t = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
    turn_of = _sequence(conversations[b])[2]
    k = t + 1 if predicts else t
    where = "padding" if k >= len(turn_of) else "<start>" if k == 0 else \
        f"{'predicting ' if predicts else ''}a token of turn {turn_of[k]}"
    return f"{first_difference(got, want)} ({where})"


_INPUTS = "input = <start> q1 a1 <end> q2 a2 <end> ... qn an (no final <end>), padded on the right with PAD (0)"
_LABELS = ("labels[t] is the token after input_ids[t] where it is an answer token or its <end>, IGNORE_INDEX (-100) "
           "for question tokens and padding")


def _compare_rows(case: str, conversations, what: str, got: list[list[int]], want: list[list[int]], layout: str,
                  matches) -> None:
    for b, (g, w) in enumerate(zip(got, want)):
        if g != w:
            fail(case, f"{what}[{b}] = {words(w)}", f"{what}[{b}] = {words(g)}",
                 f"{layout}; {_first_difference(conversations, b, g, w, what == 'labels')}", matches)


@register
def expect_batch(case: str, build_conversation_batch, conversations, expected_ids: list[list[int]] | None = None,
                 expected_labels: list[list[int]] | None = None) -> None:
    """Call the student's function on a copy of `conversations` and compare with the expected tensors.

    Without expected values the reference implementation provides them (hidden tests pass literals).
    """
    if expected_ids is None or expected_labels is None:
        ref_ids, ref_labels = _reference(conversations)
        expected_ids, expected_labels = ref_ids.tolist(), ref_labels.tolist()
    given = copy.deepcopy(conversations)
    result = call(case, build_conversation_batch, given,
                  hint="build_conversation_batch(conversations) should return (input_ids, labels)")
    if given != conversations:
        fail(case, "the conversations left unchanged", "your function changed the token lists it was given",
             "build new lists (e.g. [START] + question + answer) instead of question += ... or .append on the input",
             mutation_matches(CONVERSATION_MISTAKES, (conversations,), (given,)))
    if isinstance(result, (tuple, list)) and len(result) == 2 and all(
            isinstance(x, torch.Tensor) and x.dtype == torch.long for x in result) \
            and result[0].tolist() == expected_ids and result[1].tolist() == expected_labels:
        return  # the passing path runs no catalogue
    matches = batch_matches(CONVERSATION_MISTAKES, (conversations,), result)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(case, "a pair (input_ids, labels)", short(result), "return both tensors: `return input_ids, labels`",
             matches)
    input_ids, labels = result
    shape = (len(expected_ids), len(expected_ids[0]))
    for name, value in (("input_ids", input_ids), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            fail(f"{case}: {name}", "a torch.Tensor", f"{type(value).__name__}: {short(value)}",
                 "build it with torch.tensor(rows, dtype=torch.long)", matches)
        if value.dtype != torch.long:
            fail(f"{case}: {name}", f"dtype {torch.long}", f"dtype {value.dtype}",
                 "token ids and labels are torch.long: torch.tensor(rows, dtype=torch.long)", matches)
        if value.dim() != 2 or value.shape[0] != shape[0]:
            fail(f"{case}: {name}", f"shape {shape} (one row per conversation)", f"shape {tuple(value.shape)}",
                 "stack the padded rows into one (B, L) tensor", matches)
    got_ids, got_labels = input_ids.tolist(), labels.tolist()
    if tuple(input_ids.shape) != shape:
        _compare_rows(f"{case}: input_ids", conversations, "input_ids", got_ids, expected_ids, _INPUTS, matches)
        longest = max(range(len(expected_ids)), key=lambda b: len(_sequence(conversations[b])[0]))
        fail(f"{case}: input_ids", f"shape {shape}: pad to the longest conversation, whose input has {shape[1]} tokens "
             f"{words(expected_ids[longest])}", f"shape {tuple(input_ids.shape)}", _INPUTS, matches)
    if tuple(labels.shape) != shape:
        fail(f"{case}: labels", f"shape {shape}, the same as input_ids", f"shape {tuple(labels.shape)}",
             "labels[t] is the target of input_ids[t], so both tensors have the same shape", matches)
    _compare_rows(case, conversations, "input_ids", got_ids, expected_ids, _INPUTS, matches)
    _compare_rows(case, conversations, "labels", got_labels, expected_labels, _LABELS, matches)
    for b, row in enumerate(got_labels):
        if all(t == IGNORE_INDEX for t in row):  # cannot happen when the comparison above passed; kept as a guard
            fail(case, "at least one supervised label per row", f"row {b} is all -100", "supervise the answers")


def _cases() -> list[tuple[str, list]]:
    w = EXTENDED_VOCAB
    color, shape, where = _q("what color ?"), _q("what shape ?"), _q("where is it ?")
    and_color, and_shape, and_where = _q("and what color ?"), _q("and what shape ?"), _q("and where is it ?")
    return [
        ("one conversation of one turn", [[(color, [w["red"]])]]),
        ("two turns: 'what color ? red' then 'and what shape ? circle'",
         [[(color, [w["red"]]), (and_shape, [w["circle"]])]]),
        ("three turns", [[(where, [w["top-left"]]), (and_color, [w["blue"]]), (and_shape, [w["square"]])]]),
        ("a batch of 1, 3 and 2 turns (padding)",
         [[(shape, [w["square"]])],
          [(color, [w["green"]]), (and_where, [w["center"]]), (and_shape, [w["circle"]])],
          [(where, [w["bottom-right"]]), (and_color, [w["red"]])]]),
        ("answers of two words", [[(color, [w["red"], w["blue"]]), (and_shape, [w["circle"], w["square"]])]]),
    ]


@register
def check_build_conversation_batch(build_conversation_batch) -> None:
    """One-turn batches equal build_instruction_batch; multi-turn batches supervise every answer and <end>."""
    w = EXTENDED_VOCAB
    questions = [_q("what color ?"), _q("where is it ?"), _q("what shape ?")]
    answers = [[w["red"]], [w["top-right"]], [w["circle"]]]
    ids, labels = _one_turn(questions, answers)
    expect_batch("three one-turn conversations: must equal build_instruction_batch(questions, answers)",
                 build_conversation_batch, [[(q, a)] for q, a in zip(questions, answers)], ids.tolist(), labels.tolist())
    for case, conversations in _cases():
        expect_batch(case, build_conversation_batch, conversations)
    g = torch.Generator().manual_seed(7)
    keys = ("color", "shape", "position")
    for trial in range(3):  # random batches: 1-3 turns each, random lengths
        batch = []
        for _ in range(1 + trial * 2):
            turns = []
            for k in torch.randperm(3, generator=g)[: 1 + int(torch.randint(3, (1,), generator=g))].tolist():
                q = _q({"color": "what color ?", "shape": "what shape ?", "position": "where is it ?"}[keys[k]])
                turns.append(((_q("and") if turns else []) + q, [int(torch.randint(10, 20, (1,), generator=g))]))
            batch.append(turns)
        expect_batch(f"random batch {trial + 1} of {len(batch)} conversations", build_conversation_batch, batch)
    passed("build_conversation_batch", "every answer and its <end> supervised, questions masked, "
           "one-turn batches equal build_instruction_batch")
