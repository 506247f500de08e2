"""The 20-token vocabulary of the shapes world, and how text becomes token ids.

Every sentence in this course is a handful of words from a closed vocabulary, so the
"tokenizer" is a dictionary lookup. The ids are the seed notebook's: ``<pad>`` is 0,
``<start>`` 1 and ``<end>`` 2. ``IGNORE_INDEX`` is the label value that the loss skips,
the same -100 that LLaVA and ``F.cross_entropy`` use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PAD, START, END = 0, 1, 2
IGNORE_INDEX = -100

COLORS = ("red", "blue", "green")
SHAPES = ("circle", "square")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
QUESTION_TYPES = ("color", "shape", "position")

TOKENS = (
    "<pad>", "<start>", "<end>",
    "what", "color", "shape", "where", "is", "it", "?",
    *COLORS,
    *SHAPES,
    *POSITIONS,
)
VOCAB: dict[str, int] = {token: i for i, token in enumerate(TOKENS)}
ID_TO_TOKEN: dict[int, str] = dict(enumerate(TOKENS))
VOCAB_SIZE = len(TOKENS)  # 20

# Notebook 08 adds "and" for follow-up questions ("and what shape ?"); id 20.
FOLLOW_UP_TOKENS = ("and",)
EXTENDED_TOKENS = TOKENS + FOLLOW_UP_TOKENS
EXTENDED_VOCAB: dict[str, int] = {token: i for i, token in enumerate(EXTENDED_TOKENS)}
EXTENDED_VOCAB_SIZE = len(EXTENDED_TOKENS)  # 21

SPECIAL_IDS = frozenset({PAD, START, END})


def encode(text: str | Iterable[str], vocab: dict[str, int] = VOCAB) -> list[int]:
    """Turn "what color ?" (or a list of words) into token ids; unknown words raise KeyError."""
    words = text.split() if isinstance(text, str) else list(text)
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise KeyError(f"not in the vocabulary: {unknown}; known words: {sorted(vocab)}")
    return [vocab[w] for w in words]


def decode(ids: Sequence[int], skip_special: bool = True, tokens: Sequence[str] = EXTENDED_TOKENS) -> str:
    """Token ids (or labels) as a space-separated string: the one way ids become text.

    By default <pad>/<start>/<end> and masked labels (-100) are dropped; with skip_special=False
    they are shown, -100 as "-100": [1, 10, 13, -100] -> "<start> red circle -100". An id outside
    the vocabulary shows as "<unk:99>".
    """
    words = []
    for i in ids:
        i = int(i)
        if skip_special and (i in SPECIAL_IDS or i == IGNORE_INDEX):
            continue
        words.append(str(i) if i == IGNORE_INDEX else tokens[i] if 0 <= i < len(tokens) else f"<unk:{i}>")
    return " ".join(words)
