"""Checks for notebook 08_multiturn: build_conversation_batch, the multi-turn label mask."""

from __future__ import annotations

import copy

import torch

from ..batching import build_conversation_batch as _reference
from ..batching import build_instruction_batch as _one_turn
from ..vocab import END, EXTENDED_VOCAB, IGNORE_INDEX, PAD, START, encode
from ._common import call, expect_tensor, fail, passed, register, short
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


def _diagnose_inputs(case: str, conversations, got: list[list[int]], want: list[list[int]]) -> None:
    """Fail with a specific hint at the first input row that differs (rows may differ in length)."""
    for b, (g, w) in enumerate(zip(got, want)):
        if g == w:
            continue
        tokens, _, turn_of = _sequence(conversations[b])
        real = len(tokens) - 1  # the unpadded length of this row
        g_real, tail = g[:real], g[real:]
        expected, received = f"input_ids[{b}] = {words(w)}", f"input_ids[{b}] = {words(g)}"
        if g_real == w[:real] and tail[:1] == [END] and len(g) > len(w):
            hint = "the final <end> is only a label: the input stops after the last answer (sequence[:-1])"
        elif g_real == w[:real] and tail[:1] == [END] and all(t == PAD for t in tail[1:]):
            hint = ("this shorter conversation keeps its final <end> in the input: you padded before shifting. "
                    "Cut each row first (input = sequence[:-1]), then pad with PAD")
        elif g_real and g_real[0] != START:
            hint = "every input row starts with <start>"
        elif g_real.count(START) > 1:
            hint = "<start> appears once, at the very beginning; turns are separated by <end>, not <start>"
        elif g_real.count(END) < w[:real].count(END):
            hint = ("each answer except the last must be followed by <end> in the input, so the model sees "
                    "where one turn stops and the next question begins")
        elif g_real == w[:real] and any(t != PAD for t in tail):
            hint = f"pad input_ids on the right with PAD ({PAD}) up to the longest conversation"
        else:
            t = next((i for i, (x, y) in enumerate(zip(g, w)) if x != y), min(len(g), len(w)))
            hint = f"first difference at position {t} (turn {turn_of[t] if t < len(turn_of) else '-'})"
        fail(case, expected, received, hint)


def _diagnose_labels(case: str, conversations, got: list[list[int]], want: list[list[int]]) -> None:
    for b, (g, w) in enumerate(zip(got, want)):
        if g == w:
            continue
        tokens, supervised, turn_of = _sequence(conversations[b])
        real = len(tokens) - 1
        expected, received = f"labels[{b}] = {words(w)}", f"labels[{b}] = {words(g)}"
        targets = tokens[1:]
        unshifted = [t if s else IGNORE_INDEX for t, s in zip(tokens[:-1], supervised[1:])]
        unshifted_2 = [t if s else IGNORE_INDEX for t, s in zip(tokens[:-1], supervised[:-1])]
        if g[:real] in (unshifted, unshifted_2) or g[:real] == [IGNORE_INDEX] + w[:real - 1] \
                or g[:real] == w[1:real] + [IGNORE_INDEX]:
            hint = ("labels are off by one: labels[t] must be the token that FOLLOWS input_ids[t], "
                    "i.e. labels = sequence[1:] while input_ids = sequence[:-1]")
            fail(case, expected, received, hint)
        t = next(i for i, (x, y) in enumerate(zip(g, w)) if x != y)
        turn = turn_of[t + 1] if t + 1 < len(turn_of) else None
        if t >= real:
            hint = (f"padding positions must be IGNORE_INDEX ({IGNORE_INDEX}) in labels, not {g[t]}: "
                    "a PAD label would train the model to predict <pad>")
        elif w[t] == IGNORE_INDEX and g[t] == targets[t]:
            hint = (f"position {t} predicts a token of question {turn}, which must be masked with IGNORE_INDEX: "
                    "the model should learn to answer, not to ask")
        elif w[t] == END and g[t] == IGNORE_INDEX:
            hint = (f"the <end> after answer {turn} must be supervised, so the model learns to stop "
                    "after every answer, not only the last one" if turn != len(conversations[b]) else
                    "the final <end> must be a label, so the model learns to stop after its answer")
        elif w[t] != IGNORE_INDEX and g[t] == IGNORE_INDEX:
            hint = (f"answer {turn} is not supervised: every answer of the conversation is a label, "
                    "not only the last one")
        else:
            hint = f"first difference at position {t} (turn {turn}): expected {w[t]}, received {g[t]}"
        fail(case, expected, received, hint)


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
             "build new lists (e.g. [START] + question + answer) instead of question += ... or .append on the input")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(case, "a pair (input_ids, labels)", short(result), "return both tensors: `return input_ids, labels`")
    input_ids, labels = result
    shape = (len(expected_ids), len(expected_ids[0]))
    for name, value in (("input_ids", input_ids), ("labels", labels)):
        expect_tensor(f"{case}: {name}", value, dtype=torch.long)
        if value.dim() != 2 or value.shape[0] != shape[0]:
            fail(f"{case}: {name}", f"shape {shape} (one row per conversation)", f"shape {tuple(value.shape)}",
                 "stack the padded rows into one (B, L) tensor")
    got_ids, got_labels = input_ids.tolist(), labels.tolist()
    if tuple(input_ids.shape) != shape:
        _diagnose_inputs(f"{case}: input_ids", conversations, got_ids, expected_ids)
        longest = max(range(len(expected_ids)), key=lambda b: len(_sequence(conversations[b])[0]))
        fail(f"{case}: input_ids", f"shape {shape}: pad to the longest conversation, whose input has {shape[1]} tokens "
             f"{words(expected_ids[longest])}", f"shape {tuple(input_ids.shape)}",
             "input = <start> q1 a1 <end> q2 a2 <end> ... qn an (no final <end>), padded on the right")
    if tuple(labels.shape) != shape:
        fail(f"{case}: labels", f"shape {shape}, the same as input_ids", f"shape {tuple(labels.shape)}",
             "labels[t] is the target of input_ids[t], so both tensors have the same shape")
    _diagnose_inputs(case, conversations, got_ids, expected_ids)
    _diagnose_labels(case, conversations, got_labels, expected_labels)
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
