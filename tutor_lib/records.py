"""Samples as LLaVA-format conversation records, and back.

LLaVA's instruction data (stage 2) is a JSON list of records like::

    {"id": "000042", "image": "000042.png",
     "conversations": [{"from": "human", "value": "<image>\\nwhat color ?"},
                       {"from": "gpt", "value": "red"}]}

The ``<image>`` placeholder marks that the image belongs to this conversation. LLaVA's
``preprocess_multimodal`` accepts it anywhere in the first human turn ("what color ?\\n<image>"
is common in its data), removes it and puts the visual tokens first, before the question; this
module does the same. A multi-turn dialogue simply has more human/gpt pairs, with ``<image>``
in the first human turn only. Every record here has an image: LLaVA-1.5's text-only records
(no ``<image>``, no ``image``) are not part of this course.

Stage 1's caption data (LLaVA-1.5's 558K LCS pairs) uses the same format with a brief-description
instruction in the human turn and the caption as the answer; its ``plain`` template keeps only
``<image>`` and the caption, so the instruction never reaches the model. ``to_caption_record``
and ``from_caption_record`` write and read those.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from .batching import Turn
from .vocab import EXTENDED_TOKENS, EXTENDED_VOCAB, SPECIAL_IDS, TOKENS

IMAGE_PLACEHOLDER = "<image>"
# One of LLaVA's brief-description prompts for its stage-1 data; it is English, not our vocabulary,
# and the plain template drops it, so it is written out but never encoded.
CAPTION_INSTRUCTION = "Describe the image briefly."


def _words(ids: Sequence[int], where: str) -> str:
    """Token ids as words; special ids (<pad>, <start>, <end>), ids out of range and an empty list raise."""
    words = []
    for i in ids:
        try:
            i = operator.index(i)
        except TypeError:
            raise ValueError(f"{where}: token ids must be whole numbers, got {i!r}") from None
        if i in SPECIAL_IDS:
            raise ValueError(f"{where}: special token {TOKENS[i]} (id {i}) has no place in a record's text; "
                             "give the words only (the batch builder adds <start> and <end>)")
        if not 0 <= i < len(EXTENDED_TOKENS):
            raise ValueError(f"{where}: token id {i} is outside the vocabulary (ids 0-{len(EXTENDED_TOKENS) - 1})")
        words.append(EXTENDED_TOKENS[i])
    if not words:
        raise ValueError(f"{where} is empty: every turn needs a question and an answer of at least one word")
    return " ".join(words)


def _check_names(sample_id: str, image: str) -> None:
    for name, value in (("sample_id", sample_id), ("image", image)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def to_llava_record(turns: Sequence[Turn], sample_id: str, image: str) -> dict:
    """Turn [(question_tokens, answer_tokens), ...] into one LLaVA conversation record."""
    _check_names(sample_id, image)
    if not turns:
        raise ValueError(f"record {sample_id!r}: a conversation needs at least one (question, answer) turn")
    conversations = []
    for t, (question, answer) in enumerate(turns):
        text = _words(question, f"record {sample_id!r}, turn {t}, human")
        if t == 0:
            text = f"{IMAGE_PLACEHOLDER}\n{text}"
        conversations.append({"from": "human", "value": text})
        conversations.append({"from": "gpt", "value": _words(answer, f"record {sample_id!r}, turn {t}, gpt")})
    return {"id": sample_id, "image": image, "conversations": conversations}


def _encode(text: str, vocab: dict[str, int], where: str) -> list[int]:
    words = text.split()
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise ValueError(f"{where}: {', '.join(map(repr, unknown))} not in the vocabulary of {len(vocab)} words "
                         f"({' '.join(vocab)})")
    if not words:
        raise ValueError(f"{where} is empty: every turn needs a question and an answer of at least one word")
    return [vocab[w] for w in words]


def _conversations(record: dict) -> tuple[str, list]:
    """The record's id (for messages) and its conversation list, after the checks every record needs."""
    if not isinstance(record, dict):
        raise ValueError(f"a LLaVA record is a dict with 'id', 'image' and 'conversations', got {type(record).__name__}")
    rid = record.get("id")
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations or len(conversations) % 2:
        raise ValueError(f"record {rid!r}: 'conversations' must be a non-empty list of human/gpt pairs")
    for i, message in enumerate(conversations):
        role = ("human", "gpt")[i % 2]
        if not isinstance(message, dict) or message.get("from") != role:
            raise ValueError(f"record {rid!r}: turn {i // 2} must be 'human' then 'gpt'")
        if not isinstance(message.get("value"), str):
            raise ValueError(f"record {rid!r}, turn {i // 2}, {role}: 'value' must be a string")
    first = conversations[0]["value"]
    count = first.count(IMAGE_PLACEHOLDER)
    if count != 1:
        raise ValueError(f"record {rid!r}, turn 0, human: needs exactly one {IMAGE_PLACEHOLDER} "
                         f"(anywhere in the text), found {count}")
    for i, message in enumerate(conversations[1:], start=1):
        if IMAGE_PLACEHOLDER in message["value"]:
            raise ValueError(f"record {rid!r}, turn {i // 2}, {message['from']}: "
                             f"{IMAGE_PLACEHOLDER} may only appear in the first human turn")
    image = record.get("image")
    if not isinstance(image, str) or not image:
        raise ValueError(f"record {rid!r}: has {IMAGE_PLACEHOLDER} but no 'image' path")
    return rid, conversations


def from_llava_record(record: dict, vocab: dict[str, int] = EXTENDED_VOCAB) -> list[Turn]:
    """Read a LLaVA conversation record back into [(question_tokens, answer_tokens), ...].

    ``<image>`` may stand anywhere in the first human turn (exactly once); as in LLaVA the visual
    tokens then come first, so it is simply removed from the question.
    """
    rid, conversations = _conversations(record)
    turns = []
    for i in range(0, len(conversations), 2):
        t = i // 2
        question = conversations[i]["value"].replace(IMAGE_PLACEHOLDER, " ")
        turns.append((_encode(question, vocab, f"record {rid!r}, turn {t}, human"),
                      _encode(conversations[i + 1]["value"], vocab, f"record {rid!r}, turn {t}, gpt")))
    return turns


def to_caption_record(caption: Sequence[int], sample_id: str, image: str,
                      instruction: str = CAPTION_INSTRUCTION) -> dict:
    """One stage-1 caption record, as in LLaVA's pretraining data: an instruction and <image>, then the caption."""
    _check_names(sample_id, image)
    if not isinstance(instruction, str) or IMAGE_PLACEHOLDER in instruction:
        raise ValueError(f"instruction must be a string without {IMAGE_PLACEHOLDER}, got {instruction!r}")
    human = f"{instruction}\n{IMAGE_PLACEHOLDER}" if instruction.strip() else IMAGE_PLACEHOLDER
    answer = _words(caption, f"record {sample_id!r}, turn 0, gpt")
    return {"id": sample_id, "image": image,
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]}


def from_caption_record(record: dict, vocab: dict[str, int] = EXTENDED_VOCAB) -> list[int]:
    """The caption's token ids of a stage-1 record; like LLaVA's plain template it ignores the instruction."""
    rid, conversations = _conversations(record)
    if len(conversations) != 2:
        raise ValueError(f"record {rid!r}: a caption record has one human/gpt pair, found {len(conversations) // 2}")
    return _encode(conversations[1]["value"], vocab, f"record {rid!r}, turn 0, gpt")


def dataset_to_records(dataset, prefix: str = "shapes") -> list[dict]:
    """One single-turn LLaVA record per sample of a ShapesDataset (image names are placeholders)."""
    return [
        to_llava_record([(dataset.questions[i], dataset.answers[i])], f"{prefix}-{i:06d}", f"{prefix}-{i:06d}.png")
        for i in range(len(dataset))
    ]


def dataset_to_caption_records(dataset, prefix: str = "shapes") -> list[dict]:
    """One stage-1 caption record per sample of a ShapesDataset (image names are placeholders)."""
    return [to_caption_record(dataset.captions[i], f"{prefix}-{i:06d}", f"{prefix}-{i:06d}.png")
            for i in range(len(dataset))]
