"""Multi-turn dialogues about one image: the data, training tensors and per-turn evaluation of notebook 08.

A dialogue asks two or three different questions about the same image. The first is one of
the seed's questions ("what color ?"); every later one is a follow-up that starts with the
new word "and" ("and what shape ?"). Like a LLaVA conversation record, the whole dialogue
trains as one sequence, every answer and its <end> supervised:

    <start> what color ? red <end> and what shape ? circle <end> and where is it ? top-left <end>

Evaluation asks turn k after the history of turns 1..k-1, either the true history (each
turn measured on its own) or the model's own earlier answers (as a chat user would see it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .batching import Turn, build_conversation_batch
from .data import HELD_OUT_CONFIGS, QUESTIONS, TRAIN_CONFIGS, make_dataset, make_qa
from .evaluate import generate
from .model import MultimodalModel, set_stage
from .records import to_llava_record
from .train import fit
from .vocab import COLORS, END, EXTENDED_VOCAB, POSITIONS, QUESTION_TYPES, SHAPES, START, decode, encode


def question_tokens(question_type: str, follow_up: bool) -> list[int]:
    """Token ids of "what shape ?" or, as a follow-up, "and what shape ?" (extended vocabulary)."""
    text = QUESTIONS[question_type]
    return encode(f"and {text}" if follow_up else text, EXTENDED_VOCAB)


@dataclass
class DialogueDataset:
    """N dialogues: one image each (N, 3, S, S), its index tensors (N,), and the question type of every turn."""

    images: torch.Tensor
    colors: torch.Tensor
    shapes: torch.Tensor
    positions: torch.Tensor
    question_types: list[tuple[str, ...]]

    def __post_init__(self) -> None:
        self.turns: list[list[Turn]] = []
        for c, s, p, types in zip(self.colors.tolist(), self.shapes.tolist(), self.positions.tolist(),
                                  self.question_types):
            qa = [make_qa(COLORS[c], SHAPES[s], POSITIONS[p], t) for t in types]
            self.turns.append([(question_tokens(t, follow_up=k > 0), q["answer_tokens"])
                               for k, (t, q) in enumerate(zip(types, qa))])
        self.captions = [[EXTENDED_VOCAB[COLORS[c]], EXTENDED_VOCAB[SHAPES[s]]]
                         for c, s in zip(self.colors.tolist(), self.shapes.tolist())]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "color": COLORS[self.colors[i]], "shape": SHAPES[self.shapes[i]],
                "position": POSITIONS[self.positions[i]], "question_types": self.question_types[i],
                "turns": self.turns[i], "caption_tokens": self.captions[i]}

    def subset(self, indices: Sequence[int]) -> DialogueDataset:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return DialogueDataset(self.images[idx], self.colors[idx], self.shapes[idx], self.positions[idx],
                               [self.question_types[i] for i in idx.tolist()])

    def first_turns(self) -> DialogueDataset:
        """The same images with only the first question each: single-turn data."""
        return DialogueDataset(self.images, self.colors, self.shapes, self.positions,
                               [types[:1] for types in self.question_types])

    def records(self, prefix: str = "dialogue") -> list[dict]:
        """The dialogues as LLaVA conversation records (image names are placeholders)."""
        return [to_llava_record(turns, f"{prefix}-{i:06d}", f"{prefix}-{i:06d}.png")
                for i, turns in enumerate(self.turns)]


def make_dialogues(n: int, configs: Sequence[tuple[int, int, int]] = TRAIN_CONFIGS, num_turns: Sequence[int] = (2, 3),
                   image_size: int = 64, noise_std: float = 0.05, seed: int = 42) -> DialogueDataset:
    """n dialogues, each of a number of turns drawn from num_turns, asking distinct question types in random order."""
    if not num_turns or not all(1 <= k <= len(QUESTION_TYPES) for k in num_turns):
        raise ValueError(f"num_turns must be a non-empty list of 1..{len(QUESTION_TYPES)}, got {num_turns}")
    base = make_dataset(n, tuple(configs), image_size, noise_std, seed)
    g = torch.Generator().manual_seed(seed + 1)
    lengths = torch.tensor(list(num_turns))[torch.randint(len(num_turns), (n,), generator=g)].tolist()
    types = [tuple(QUESTION_TYPES[j] for j in torch.randperm(len(QUESTION_TYPES), generator=g)[:k].tolist())
             for k in lengths]
    return DialogueDataset(base.images, base.colors, base.shapes, base.positions, types)


@dataclass
class DialogueSplits:
    train: DialogueDataset
    test_iid: DialogueDataset
    test_heldout: DialogueDataset


def make_dialogue_splits(n_train: int = 400, n_test: int = 120, n_heldout: int = 120, num_turns: Sequence[int] = (2, 3),
                         image_size: int = 64, seed: int = 42) -> DialogueSplits:
    """Train and IID test dialogues on the 24 training configurations, held-out test on the other 6."""
    seeds = torch.randint(2**30, (3,), generator=torch.Generator().manual_seed(seed)).tolist()
    common = {"num_turns": num_turns, "image_size": image_size}
    return DialogueSplits(make_dialogues(n_train, TRAIN_CONFIGS, seed=seeds[0], **common),
                          make_dialogues(n_test, TRAIN_CONFIGS, seed=seeds[1], **common),
                          make_dialogues(n_heldout, HELD_OUT_CONFIGS, seed=seeds[2], **common))


def conversation_tensors(dataset: DialogueDataset, build: Callable = build_conversation_batch):
    """(images, input_ids, labels) of every dialogue, built once before training with `build`."""
    input_ids, labels = build(dataset.turns)
    return dataset.images, input_ids, labels


def train_dialogues(model: MultimodalModel, dataset: DialogueDataset, num_epochs: int = 30, batch_size: int = 32,
                    lr: float = 5e-4, *, build: Callable = build_conversation_batch, progress: bool = True,
                    seed: int | None = None) -> list[float]:
    """Stage 2 on whole dialogues (projector + language model train) -> per-epoch mean losses."""
    set_stage(model, 2)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return fit(model, *conversation_tensors(dataset, build), num_epochs, batch_size, lr,
               desc="stage 2 (dialogues)", progress=progress, generator=generator)


def answer_turns(model: MultimodalModel, dataset: DialogueDataset, history: str = "truth",
                 max_new_tokens: int = 3) -> list[list[list[int]]]:
    """Greedy answer to every turn of every dialogue -> answers[i][k], token ids without <end>.

    history="truth": turn k is asked after the true turns 1..k-1; history="model": after
    the model's own earlier answers, as in a real chat.
    """
    if history not in ("truth", "model"):
        raise ValueError(f"history must be 'truth' or 'model', got {history!r}")
    answers: list[list[list[int]]] = [[] for _ in range(len(dataset))]
    for k in range(max(len(t) for t in dataset.turns)):
        prompts = {}
        for i, turns in enumerate(dataset.turns):
            if k < len(turns):
                prompt = [START]
                for j in range(k):
                    earlier = turns[j][1] if history == "truth" else answers[i][j]
                    prompt += [*turns[j][0], *earlier, END]
                prompts[i] = prompt + list(turns[k][0])
        by_length = defaultdict(list)  # generate() wants prompts of equal length
        for i, prompt in prompts.items():
            by_length[len(prompt)].append(i)
        for indices in by_length.values():
            batch = torch.tensor([prompts[i] for i in indices])
            for i, answer in zip(indices, generate(model, dataset.images[indices], batch, max_new_tokens)):
                answers[i].append(answer)
    return answers


def turn_accuracy(dataset: DialogueDataset, answers: list[list[list[int]]]) -> dict[str, float]:
    """Exact-match accuracy of turn 1, 2, ... and of whole dialogues: {"turn 1": a, ..., "dialogue": a}."""
    hits = defaultdict(list)
    for turns, predicted in zip(dataset.turns, answers):
        right = [list(p) == list(a) for (_, a), p in zip(turns, predicted)]
        for k, ok in enumerate(right):
            hits[f"turn {k + 1}"].append(ok)
        hits["dialogue"].append(all(right))
    return {key: sum(v) / len(v) for key, v in sorted(hits.items(), key=lambda kv: (kv[0] == "dialogue", kv[0]))}


def format_dialogue(dataset: DialogueDataset, i: int, answers: list[list[list[int]]]) -> str:
    """One dialogue as text: the image's truth, then each question with the model's answer (marked when wrong)."""
    sample = dataset[i]
    lines = [f"image {i}: a {sample['color']} {sample['shape']} at {sample['position']}"]
    for (question, truth), predicted in zip(sample["turns"], answers[i]):
        mark = "" if list(predicted) == list(truth) else f"   <- wrong, true answer: {decode(truth)}"
        lines.append(f"  user:  {decode(question)}\n  model: {decode(predicted) or '(nothing)'}{mark}")
    return "\n".join(lines)
