"""check_build_conversation_batch rejects typical multi-turn label-mask mistakes and accepts correct variants."""

from __future__ import annotations

import time

import pytest
import torch
from check_assertions import assert_accepts, assert_rejects

import tutor_lib
from tutor_lib.checks import CheckError, check_build_conversation_batch, not_reference
from tutor_lib.checks.nb08_multiturn import expect_batch

PAD, START, END, IGNORE = 0, 1, 2, -100


def _pad(rows, value):
    length = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (length - len(r)) for r in rows], dtype=torch.long)


# -- correct variants --------------------------------------------------------------------------

def loop_version(conversations):
    inputs, labels = [], []
    for turns in conversations:
        seq, lab = [START], [IGNORE]
        for question, answer in turns:
            seq += list(question) + list(answer) + [END]
            lab += [IGNORE] * len(question) + list(answer) + [END]
        inputs.append(seq[:-1])
        labels.append(lab[1:])
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def tensor_mask_version(conversations):
    sequences, masks = [], []
    for turns in conversations:
        seq, mask = [START], [False]
        for question, answer in turns:
            seq.extend([*question, *answer, END])
            mask.extend([False] * len(question) + [True] * (len(answer) + 1))
        sequences.append(torch.tensor(seq))
        masks.append(torch.tensor(mask))
    labels = [torch.where(m, s, torch.full_like(s, IGNORE))[1:] for s, m in zip(sequences, masks)]
    inputs = [s[:-1] for s in sequences]  # shift each row first, then pad
    return (torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True, padding_value=PAD),
            torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=IGNORE))


def pad_then_shift(conversations):
    """Pads the full sequences, then shifts: shorter rows keep their final <end> in the input."""
    sequences, masks = [], []
    for turns in conversations:
        seq, mask = [START], [False]
        for question, answer in turns:
            seq.extend([*question, *answer, END])
            mask.extend([False] * len(question) + [True] * (len(answer) + 1))
        sequences.append(torch.tensor(seq))
        masks.append(torch.tensor(mask))
    seq = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=PAD)
    mask = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True, padding_value=False)
    labels = torch.where(mask, seq, torch.full_like(seq, IGNORE))
    return seq[:, :-1], labels[:, 1:]


def per_turn_concat_version(conversations):
    """Labels built by concatenating per-turn pieces (LLaVA's own style), returned as a list."""
    rows = []
    for turns in conversations:
        ids, targets = [START], []
        for k, (question, answer) in enumerate(turns):
            targets += [IGNORE] * len(question) + list(answer) + [END]
            ids += list(question) + list(answer) + ([END] if k < len(turns) - 1 else [])
        rows.append((ids, targets))
    return [_pad([r[0] for r in rows], PAD), _pad([r[1] for r in rows], IGNORE)]


@pytest.mark.parametrize("fn", [loop_version, tensor_mask_version, per_turn_concat_version,
                                tutor_lib.build_conversation_batch])
def test_correct_variants_pass(fn, capsys):
    assert_accepts(check_build_conversation_batch, fn, capsys, "build_conversation_batch")


def test_not_reference_catches_the_reference():
    not_reference("build_conversation_batch", loop_version, [tutor_lib.batching.build_conversation_batch])
    with pytest.raises(CheckError, match="your own implementation"):
        not_reference("build_conversation_batch", tutor_lib.build_conversation_batch,
                      [tutor_lib.batching.build_conversation_batch])


# -- typical mistakes --------------------------------------------------------------------------

def questions_supervised(conversations):
    ids, labels = loop_version(conversations)
    full = [[START] + [t for q, a in turns for t in [*q, *a, END]] for turns in conversations]
    return ids, _pad([f[1:] for f in full], IGNORE)


def no_end_between_turns(conversations):
    inputs, labels = [], []
    for turns in conversations:
        seq, lab = [START], [IGNORE]
        for k, (question, answer) in enumerate(turns):
            last = k == len(turns) - 1
            seq += list(question) + list(answer) + ([END] if last else [])
            lab += [IGNORE] * len(question) + list(answer) + ([END] if last else [])
        inputs.append(seq[:-1])
        labels.append(lab[1:])
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def end_not_supervised(conversations):
    ids, labels = loop_version(conversations)
    return ids, torch.where(labels == END, torch.full_like(labels, IGNORE), labels)


def final_end_in_input(conversations):
    inputs, labels = [], []
    for turns in conversations:
        seq, lab = [START], []
        for question, answer in turns:
            seq += list(question) + list(answer) + [END]
            lab += [IGNORE] * len(question) + list(answer) + [END]
        inputs.append(seq)
        labels.append(lab + [IGNORE])
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def labels_not_shifted(conversations):
    inputs, labels = [], []
    for turns in conversations:
        seq, lab = [START], [IGNORE]
        for question, answer in turns:
            seq += list(question) + list(answer) + [END]
            lab += [IGNORE] * len(question) + list(answer) + [END]
        inputs.append(seq[:-1])
        labels.append(lab[:-1])  # aligned with the inputs instead of shifted by one
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def labels_padded_with_zero(conversations):
    ids, _ = loop_version(conversations)
    rows = loop_version(conversations)[1].tolist()
    lengths = [sum(len(q) + len(a) + 1 for q, a in turns) for turns in conversations]
    return ids, torch.tensor([r[:n] + [PAD] * (len(r) - n) for r, n in zip(rows, lengths)])


def only_last_answer_supervised(conversations):
    inputs, labels = [], []
    for turns in conversations:
        seq, lab = [START], [IGNORE]
        for k, (question, answer) in enumerate(turns):
            seq += list(question) + list(answer) + [END]
            if k == len(turns) - 1:
                lab += [IGNORE] * len(question) + list(answer) + [END]
            else:
                lab += [IGNORE] * (len(question) + len(answer) + 1)
        inputs.append(seq[:-1])
        labels.append(lab[1:])
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def start_before_every_turn(conversations):
    inputs, labels = [], []
    for turns in conversations:
        seq, lab = [], []
        for question, answer in turns:
            seq += [START] + list(question) + list(answer) + [END]
            lab += [IGNORE] + [IGNORE] * len(question) + list(answer) + [END]
        inputs.append(seq[:-1])
        labels.append(lab[1:])
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def mutates_its_input(conversations):
    for turns in conversations:
        for _question, answer in turns:
            answer.append(END)  # "add the <end>" straight into the caller's list
    inputs, labels = [], []
    for turns in conversations:
        seq, lab = [START], [IGNORE]
        for question, answer in turns:
            seq += list(question) + list(answer)
            lab += [IGNORE] * len(question) + list(answer)
        inputs.append(seq[:-1])
        labels.append(lab[1:])
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def int32_tensors(conversations):
    ids, labels = loop_version(conversations)
    return ids.int(), labels.int()


def inputs_padded_with_ignore_index(conversations):
    ids, labels = loop_version(conversations)
    return torch.where(ids == PAD, torch.full_like(ids, IGNORE), ids), labels


def last_end_not_supervised(conversations):
    ids, labels = loop_version(conversations)
    lengths = [sum(len(q) + len(a) + 1 for q, a in turns) for turns in conversations]
    for b, n in enumerate(lengths):
        labels[b, n - 1] = IGNORE
    return ids, labels


def one_turn_rows_joined(conversations):
    """Every turn as its own build_instruction_batch row, the rows joined: <start> between turns, no <end>."""
    inputs = [sum(([START, *q, *a] for q, a in turns), []) for turns in conversations]
    labels = [sum(([IGNORE] * len(q) + [*a, END] for q, a in turns), []) for turns in conversations]
    return _pad(inputs, PAD), _pad(labels, IGNORE)


def labels_shifted_by_two(conversations):
    ids, labels = loop_version(conversations)
    return ids, torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE)], dim=1)


# -- wrong variants that are in no catalogue: the message must name no mistake -------------------------

def questions_masked_with_zero(conversations):
    ids, labels = loop_version(conversations)
    lengths = [sum(len(q) + len(a) + 1 for q, a in turns) for turns in conversations]
    for b, n in enumerate(lengths):
        row = labels[b, :n]
        row[row == IGNORE] = PAD
    return ids, labels


def turns_reversed(conversations):
    return loop_version([turns[::-1] for turns in conversations])


def answers_before_questions(conversations):
    """Each turn written answer first: <start> a1 q1 <end> ..."""
    return loop_version([[(a, q) for q, a in turns] for turns in conversations])


WRONG = {
    "question tokens supervised": (questions_supervised, "question tokens supervised",
                                   "question tokens supervised: the labels are every next token"),
    "missing <end> after a turn": (no_end_between_turns, "every answer is followed by <end>",
                                   "<end> missing between turns: only the last answer has one"),
    "<end> not supervised": (end_not_supervised, "how the model learns to stop", "<end> not supervised"),
    "final <end> in the input": (final_end_in_input, "final <end> is only a label", "the final <end> kept in the input"),
    "off-by-one shift": (labels_not_shifted, "FOLLOWS input_ids",
                         "labels not shifted: labels[t] is the supervised token at t, not at t + 1"),
    "labels padded with 0": (labels_padded_with_zero, "pad labels with IGNORE_INDEX",
                             "labels padded with PAD (0) instead of -100"),
    "only the last answer supervised": (only_last_answer_supervised, "not only the last one",
                                        "only the last answer supervised"),
    "<start> before every turn": (start_before_every_turn, "<start> appears once", "<start> before every turn"),
    "mutates the caller's lists": (mutates_its_input, "changed the token lists",
                                   "the caller's answers changed: answer.append(END)"),
    "int32 tensors": (int32_tensors, "torch.int64", "int32 tensors instead of int64 (long)"),
    "inputs padded with -100": (inputs_padded_with_ignore_index, "pad input_ids on the right with PAD",
                                "input_ids padded with -100 instead of PAD (0)"),
    "padded before shifting": (pad_then_shift, "then pad",
                               "padded before shifting: shorter rows keep their final <end> in the input"),
    "last <end> not supervised": (last_end_not_supervised, "learns to stop", "the last <end> not supervised"),
    "one-turn rows joined": (one_turn_rows_joined, "<start> only once",
                             "one-turn rows joined: <start> instead of <end> between turns"),
    "questions masked with 0 (no catalogue)": (questions_masked_with_zero, "IGNORE_INDEX (-100) for question tokens",
                                               None),
    "turns in reverse order (no catalogue)": (turns_reversed, "input_ids[0] =", None),
    "labels shifted by two": (labels_shifted_by_two, "shift once", "labels shifted twice: labels[t] is the token two "
                                                                   "after input t"),
    "answers before questions (no catalogue)": (answers_before_questions, "the first difference is at position 1",
                                                None),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_variants_fail_with_a_specific_message(name, capsys):
    fn, message, names = WRONG[name]
    assert_rejects(check_build_conversation_batch, fn, message, parts=("case:", "expected:", "received:", "hint:"),
                   names=names, capsys=capsys)


def test_one_turn_case_comes_first_and_names_build_instruction_batch():
    with pytest.raises(CheckError, match="build_instruction_batch"):
        check_build_conversation_batch(questions_supervised)


def test_expect_batch_with_literal_values():
    conversations = [[([3, 4, 9], [10]), ([20, 3, 5, 9], [13])]]
    ids = [[1, 3, 4, 9, 10, 2, 20, 3, 5, 9, 13]]
    labels = [[-100, -100, -100, 10, 2, -100, -100, -100, -100, 13, 2]]
    expect_batch("literal", loop_version, conversations, ids, labels)
    with pytest.raises(CheckError, match="question tokens supervised"):
        expect_batch("literal", questions_supervised, conversations, ids, labels)


def test_check_is_fast():
    start = time.perf_counter()
    check_build_conversation_batch(loop_version)
    assert time.perf_counter() - start < 2.0
