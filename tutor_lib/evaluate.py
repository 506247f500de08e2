"""Asking the trained model questions: greedy generation and exact-match accuracy.

An answer is what the model generates after "<start> question", one argmax token at a
time, until it produces <end> (which is not part of the answer) or max_new_tokens run out.
It is correct only if it equals the true answer exactly: one right word followed by
"red red red" or by no <end> at all counts as wrong, because a chat user would see that.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from .model import MultimodalModel
from .vocab import END, QUESTION_TYPES, START


@torch.no_grad()
def greedy_continue(language_model, prefix: torch.Tensor, prompts: torch.Tensor, max_new_tokens: int = 5) -> list[list[int]]:
    """Greedy text after a prefix of embeddings (B, N, C) and equal-length prompts (B, P) -> B token lists without <end>.

    The prefix is what the language model reads before the text: the projected image here, a
    scene in words in stage 0 (`pretrain.generate_text`).
    """
    ids = prompts
    done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    new_tokens = []
    for _ in range(max_new_tokens):
        embeddings = torch.cat([prefix, language_model.token_embedding(ids)], dim=1)  # (B, N + P + k, C)
        next_id = language_model(embeddings)[:, -1].argmax(-1)  # (B,)
        next_id = torch.where(done, END, next_id)
        new_tokens.append(next_id)
        done |= next_id == END
        if done.all():
            break
        ids = torch.cat([ids, next_id[:, None]], dim=1)
    rows = torch.stack(new_tokens, 1).tolist() if new_tokens else [[] for _ in range(len(ids))]
    return [row[: row.index(END)] if END in row else row for row in rows]


@torch.no_grad()
def generate(model: MultimodalModel, images: torch.Tensor, prompts: torch.Tensor, max_new_tokens: int = 5) -> list[list[int]]:
    """Greedy continuation of equal-length prompts (B, P) for images (B, 3, S, S) -> B token lists without <end>."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    visual = model.encode_images(images.to(device))  # (B, N, C), computed once per image
    answers = greedy_continue(model.language_model, visual, prompts.to(device), max_new_tokens)
    model.train(was_training)
    return answers


def answer_question(
    model: MultimodalModel, image: torch.Tensor, question_tokens: Sequence[int], max_new_tokens: int = 5
) -> list[int]:
    """Greedy answer to one question about one (3, S, S) image, stopping at (and without) <end>."""
    prompt = torch.tensor([[START, *question_tokens]])
    return generate(model, image[None], prompt, max_new_tokens)[0]


def answer_questions(model: MultimodalModel, dataset, max_new_tokens: int = 5, batch_size: int = 512) -> list[list[int]]:
    """Answers to every sample's question, batched by question length -> one token list per sample."""
    questions = [dataset[i]["question_tokens"] for i in range(len(dataset))]
    by_length = defaultdict(list)
    for i, q in enumerate(questions):
        by_length[len(q)].append(i)
    answers: list[list[int]] = [[] for _ in questions]
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            prompts = torch.tensor([[START, *questions[i]] for i in chunk])
            images = torch.stack([dataset[i]["image"] for i in chunk])
            for i, answer in zip(chunk, generate(model, images, prompts, max_new_tokens)):
                answers[i] = answer
    return answers


def evaluate(model: MultimodalModel, dataset) -> dict:
    """Exact-match accuracy overall and per question type: {"overall": a, "color": a, ..., "n": N}."""
    answers = answer_questions(model, dataset)
    hits = defaultdict(list)
    for i, predicted in enumerate(answers):
        sample = dataset[i]
        correct = predicted == list(sample["answer_tokens"])
        hits["overall"].append(correct)
        hits[sample["question_type"]].append(correct)
    result = {key: sum(v) / len(v) for key, v in hits.items()}
    result["n"] = len(answers)
    return {k: result[k] for k in ("overall", *QUESTION_TYPES, "n") if k in result}


def caption_accuracy(model: MultimodalModel, dataset, max_new_tokens: int = 4) -> float:
    """Share of images whose greedy caption from <start> alone is exactly right ("red circle", then <end>)."""
    prompts = torch.full((len(dataset), 1), START)  # (N, 1)
    captions = generate(model, dataset.images, prompts, max_new_tokens)
    return sum(c == list(true) for c, true in zip(captions, dataset.captions)) / len(dataset)


def accuracy_table(results: dict[str, dict]) -> str:
    """A text table with one row per split and a column per question type (and "caption" where given)."""
    columns = ("caption", "overall", *QUESTION_TYPES)
    if not any("caption" in acc for acc in results.values()):
        columns = columns[1:]
    width = max(14, *(len(split) + 2 for split in results))
    lines = [f"{'split':<{width}}" + "".join(f"{c:>10}" for c in columns) + f"{'n':>6}"]
    for split, acc in results.items():
        cells = "".join(f"{acc[c]:>10.1%}" if c in acc else f"{'-':>10}" for c in columns)
        lines.append(f"{split:<{width}}{cells}{acc.get('n', 0):>6}")
    return "\n".join(lines)
