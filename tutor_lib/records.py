"""Samples as LLaVA-format conversation records, and back.

LLaVA's instruction data is a JSON list of records like::

    {"id": "000042", "image": "000042.png",
     "conversations": [{"from": "human", "value": "<image>\\nwhat color ?"},
                       {"from": "gpt", "value": "red"}]}

The ``<image>`` placeholder marks where the visual tokens go; in this course they always
come first, before the first question. A multi-turn dialogue simply has more
human/gpt pairs, with ``<image>`` in the first human turn only.
"""

from __future__ import annotations

from collections.abc import Sequence

from .vocab import EXTENDED_TOKENS, EXTENDED_VOCAB, decode, encode

IMAGE_PLACEHOLDER = "<image>"
Turn = tuple[list[int], list[int]]  # (question_tokens, answer_tokens)


def to_llava_record(turns: Sequence[Turn], sample_id: str, image: str) -> dict:
    """Turn [(question_tokens, answer_tokens), ...] into one LLaVA conversation record."""
    if not turns:
        raise ValueError("a conversation needs at least one (question, answer) turn")
    conversations = []
    for i, (question, answer) in enumerate(turns):
        text = decode(question, tokens=EXTENDED_TOKENS)
        if i == 0:
            text = f"{IMAGE_PLACEHOLDER}\n{text}"
        conversations.append({"from": "human", "value": text})
        conversations.append({"from": "gpt", "value": decode(answer, tokens=EXTENDED_TOKENS)})
    return {"id": sample_id, "image": image, "conversations": conversations}


def from_llava_record(record: dict, vocab: dict[str, int] = EXTENDED_VOCAB) -> list[Turn]:
    """Read a LLaVA conversation record back into [(question_tokens, answer_tokens), ...]."""
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations or len(conversations) % 2:
        raise ValueError(f"record {record.get('id')!r}: 'conversations' must be a non-empty list of human/gpt pairs")
    turns = []
    for i in range(0, len(conversations), 2):
        human, gpt = conversations[i], conversations[i + 1]
        if human.get("from") != "human" or gpt.get("from") != "gpt":
            raise ValueError(f"record {record.get('id')!r}: turn {i // 2} must be 'human' then 'gpt'")
        question = human["value"]
        if i == 0:
            if not question.startswith(IMAGE_PLACEHOLDER):
                raise ValueError(f"record {record.get('id')!r}: the first question must start with {IMAGE_PLACEHOLDER}")
            question = question[len(IMAGE_PLACEHOLDER):]
        elif IMAGE_PLACEHOLDER in question:
            raise ValueError(f"record {record.get('id')!r}: {IMAGE_PLACEHOLDER} may only appear in the first turn")
        turns.append((encode(question, vocab), encode(gpt["value"], vocab)))
    return turns


def dataset_to_records(dataset, prefix: str = "shapes") -> list[dict]:
    """One single-turn LLaVA record per sample of a ShapesDataset (image names are placeholders)."""
    return [
        to_llava_record([(dataset.questions[i], dataset.answers[i])], f"{prefix}-{i:06d}", f"{prefix}-{i:06d}.png")
        for i in range(len(dataset))
    ]
