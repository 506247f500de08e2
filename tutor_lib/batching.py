"""Turning token lists into (input_ids, labels) tensors: where the loss looks.

Every builder follows one rule. Write the full sequence the model should read, e.g.

    <start> what color ? red <end>

and mark which tokens are *supervised* (the answer and its <end>). Then

    input_ids = sequence[:-1]        <start> what color ?   red
    labels    = sequence[1:], with unsupervised tokens set to IGNORE_INDEX
                                     -100    -100  -100 red <end>

so the label at position t is the token the model should predict after reading
input_ids[: t + 1]. Short sequences are padded on the right: inputs with PAD, labels with
IGNORE_INDEX. A sample with no supervised token would train on a silent loss of 0, so it
raises an error instead (the most common LLaVA data bug).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .vocab import END, IGNORE_INDEX, PAD, START

Turn = tuple[Sequence[int], Sequence[int]]  # (question_tokens, answer_tokens)


def _check_tokens(tokens: Sequence[int], what: str, i: int) -> list[int]:
    tokens = [int(t) for t in tokens]
    if any(t < 0 for t in tokens):
        raise ValueError(f"sample {i}: {what} has a negative token id {tokens}; labels belong in labels, not inputs")
    return tokens


def pack_sequences(pieces: Sequence[Sequence[tuple[Sequence[int], bool]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample is a list of (tokens, supervised) pieces after <start> -> (input_ids, labels), (B, L) long."""
    if not pieces:
        raise ValueError("the batch is empty")
    inputs, labels = [], []
    for i, sample in enumerate(pieces):
        sequence, supervised = [START], [False]
        for tokens, is_target in sample:
            sequence += tokens
            supervised += [is_target] * len(tokens)
        if not any(supervised):
            raise ValueError(f"sample {i} has no supervised token: its loss would silently be 0")
        inputs.append(sequence[:-1])
        labels.append([t if s else IGNORE_INDEX for t, s in zip(sequence[1:], supervised[1:])])
    length = max(len(x) for x in inputs)
    input_ids = torch.tensor([x + [PAD] * (length - len(x)) for x in inputs], dtype=torch.long)  # (B, L)
    label_ids = torch.tensor([y + [IGNORE_INDEX] * (length - len(y)) for y in labels], dtype=torch.long)  # (B, L)
    return input_ids, label_ids


def build_caption_batch(captions: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: inputs <start> + caption, labels caption + <end> -> two (B, L) long tensors."""
    return pack_sequences([[(_check_tokens(c, "caption", i) + [END], True)] for i, c in enumerate(captions)])


def build_conversation_batch(conversations: Sequence[Sequence[Turn]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-turn: inputs <start> q1 a1 <end> q2 a2 ... qn an; answers and their <end> supervised."""
    batch = []
    for i, turns in enumerate(conversations):
        if not turns:
            raise ValueError(f"conversation {i} has no turns")
        pieces = []
        for question, answer in turns:
            pieces.append((_check_tokens(question, "question", i), False))
            pieces.append((_check_tokens(answer, "answer", i) + [END], True))
        batch.append(pieces)
    return pack_sequences(batch)


def build_instruction_batch(
    questions: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: inputs <start> + question + answer, labels -100 for the question, then answer + <end>."""
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    return build_conversation_batch([[(q, a)] for q, a in zip(questions, answers)])
