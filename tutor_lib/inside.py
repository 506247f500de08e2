"""Looking inside a trained model: attention over patches, what the projector learned, probes, ablations.

Notebook 09 asks three questions of the model that stages 1 and 2 trained:

* **Where does the answer look?** The attention weights of the position that predicts the
  answer, over the 64 visual tokens, per layer and head. `model.py` attends with PyTorch's
  fused `scaled_dot_product_attention`, which never materialises the weights, so
  `attention_weights` recomputes them from each attention layer's input (a forward hook),
  exactly as SDPA defines them: softmax(q k^T / sqrt(d_head)) under the causal mask.
* **What do the visual tokens mean?** The nearest word embedding of every projected visual
  token (the lens of notebook 05), and linear probes: how well a linear classifier reads the
  color, shape and position from the vision features, the projector outputs and the language
  model's hidden states.
* **What does the answer depend on?** Ablations that change the visual tokens the language
  model reads: shuffle their order, or replace the patches the shape covers by empty ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .data import QUESTIONS
from .evaluate import greedy_continue
from .model import MultimodalModel
from .pretrain import patch_coverage
from .vocab import QUESTION_TYPES, START, encode

# ----------------------------------------------------------------------------- attention weights

def _causal_attention(attn_module, x: torch.Tensor) -> torch.Tensor:
    """The weights SDPA applies inside one CausalSelfAttention for input x (B, T, C) -> (B, heads, T, T)."""
    B, T, C = x.shape
    h = attn_module.num_heads
    q, k, _ = attn_module.qkv(x).split(C, dim=2)  # each (B, T, C)
    q, k = (t.view(B, T, h, C // h).transpose(1, 2) for t in (q, k))  # (B, heads, T, C / heads)
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // h)  # (B, heads, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)  # row i: how much position i reads 0..i


@torch.no_grad()
def attention_weights(model: MultimodalModel, images: torch.Tensor, input_ids: torch.Tensor,
                      visual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, N + L, V) and every layer's attention weights (layers, B, heads, N + L, N + L).

    `visual` (B, N, C), if given, replaces the projected image (for ablations).
    """
    inputs = []
    hooks = [block.attn.register_forward_pre_hook(lambda module, args: inputs.append((module, args[0])))
             for block in model.language_model.blocks]
    try:
        if visual is None:
            visual = model.encode_images(images)  # (B, N, C)
        text = model.language_model.token_embedding(input_ids)  # (B, L, C)
        logits = model.language_model(torch.cat([visual, text], dim=1))  # (B, N + L, V)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, torch.stack([_causal_attention(module, x) for module, x in inputs])


def attention_rollout(attentions: torch.Tensor) -> torch.Tensor:
    """Abnar & Zuidema's rollout: (layers, B, heads, T, T) -> (B, T, T), how much each position draws on each input.

    Heads are averaged, the residual connection is added as 0.5 A + 0.5 I (rows renormalised),
    and the layers are multiplied from the first to the last.
    """
    T = attentions.shape[-1]
    eye = torch.eye(T, device=attentions.device)
    rollout = eye.expand(attentions.shape[1], T, T)
    for layer in attentions:  # (B, heads, T, T), first layer first
        a = 0.5 * layer.mean(1) + 0.5 * eye
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    return rollout


def covered_patches(dataset, patch_size: int = 8) -> torch.Tensor:
    """Which patches the shape of each sample covers (N, G*G) bool (a quarter of their pixels or more)."""
    return patch_coverage(dataset.colors, dataset.shapes, dataset.positions, dataset.images.shape[-1], patch_size)


def question_prompts(dataset, question_type: str) -> torch.Tensor:
    """`<start>` + the question of the given type, for every sample (N, P): the same question for all."""
    return torch.tensor([[START, *encode(QUESTIONS[question_type])]] * len(dataset))


# ----------------------------------------------------------------------------- the projector's words

@torch.no_grad()
def nearest_tokens(visual: torch.Tensor, token_embedding: torch.Tensor) -> torch.Tensor:
    """For visual tokens (..., C) the id of the word embedding (V, C) nearest by cosine similarity -> (...)."""
    return (F.normalize(visual, dim=-1) @ F.normalize(token_embedding, dim=-1).T).argmax(-1)


# ----------------------------------------------------------------------------- linear probes

def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                          ridge: float = 1e-3) -> float:
    """Fit a ridge-regression probe on one-hot labels (with a bias) on train, return its accuracy on test.

    train_x (N, D), train_y (N,) class ids; test_x (M, D), test_y (M,). The weights W (D + 1, K)
    solve (X^T X + ridge * I) W = X^T Y, X = [train_x, 1], Y the one-hot labels over
    K = train_y.max() + 1 classes; a test row's prediction is the argmax of [x, 1] W (ridge
    applies to the bias row too).
    """
    x = torch.cat([train_x.double(), torch.ones(len(train_x), 1, dtype=torch.float64)], 1)  # (N, D + 1)
    num_classes = int(train_y.max()) + 1
    y = F.one_hot(train_y.long(), num_classes).double()  # (N, K)
    w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)  # (D + 1, K)
    test = torch.cat([test_x.double(), torch.ones(len(test_x), 1, dtype=torch.float64)], 1)  # (M, D + 1)
    return (test @ w).argmax(1).eq(test_y.long()).double().mean().item()


@torch.no_grad()
def probe_features(model: MultimodalModel, images: torch.Tensor, visual: torch.Tensor | None = None
                   ) -> dict[str, torch.Tensor]:
    """One feature vector per image at each stage of the model -> {site: (B, D)}.

    "vision encoder" and "projector": the mean over the 64 patch features; "LM layer k": the
    language model's hidden state after block k at the `<start>` position, which has read the
    whole image (the position that writes the caption's first word).
    """
    features = model.vision_encoder(images)  # (B, N, vision_dim)
    if visual is None:
        visual = model.projector(features)  # (B, N, llm_dim)
    lm = model.language_model
    start = lm.token_embedding(torch.full((len(images), 1), START, device=images.device))  # (B, 1, C)
    x = torch.cat([visual, start], dim=1)
    x = x + lm.position_embedding(torch.arange(x.shape[1], device=x.device))
    sites = {"vision encoder": features.mean(1), "projector": visual.mean(1)}
    for k, block in enumerate(lm.blocks, start=1):
        x = block(x)
        sites[f"LM layer {k}"] = x[:, -1]  # (B, C)
    return {name: f.cpu() for name, f in sites.items()}


def probe_table(probe: Callable, train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], train_set, test_set
                ) -> dict[str, dict[str, float]]:
    """Accuracy of `probe` (linear_probe_accuracy's signature) for color, shape and position at every site."""
    targets = {"color": "colors", "shape": "shapes", "position": "positions"}
    return {site: {what: probe(train[site], getattr(train_set, attr), test[site], getattr(test_set, attr))
                   for what, attr in targets.items()} for site in train}


# ----------------------------------------------------------------------------- ablations

def shuffle_tokens(visual: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Visual tokens (B, N, C) with the N tokens of each image in a random order of their own."""
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(visual.shape[1], generator=g) for _ in range(len(visual))])  # (B, N)
    return visual.gather(1, order.to(visual.device)[..., None].expand_as(visual))


def mask_tokens(visual: torch.Tensor, mask: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """Visual tokens (B, N, C) with the tokens where mask (B, N) is True taken from replacement (B or 1, N, C)."""
    return torch.where(mask[..., None].to(visual.device), replacement.expand_as(visual), visual)


@torch.no_grad()
def answers_with_visual(model: MultimodalModel, dataset, visual: torch.Tensor) -> list[list[int]]:
    """Greedy answers to every sample's question when the LM reads `visual` (N, num_patches, C) instead of the image."""
    answers: list[list[int]] = [[] for _ in range(len(dataset))]
    for q_type in QUESTION_TYPES:
        idx = (dataset.question_types == QUESTION_TYPES.index(q_type)).nonzero().flatten()
        if len(idx):
            prompts = question_prompts(dataset.subset(idx), q_type).to(visual.device)
            for i, answer in zip(idx.tolist(), greedy_continue(model.language_model, visual[idx.to(visual.device)], prompts)):
                answers[i] = answer
    return answers


def accuracy_with_visual(model: MultimodalModel, dataset, visual: torch.Tensor) -> dict[str, float]:
    """Exact-match accuracy per question type when the LM reads `visual` (N, num_patches, C) instead of the image."""
    answers = answers_with_visual(model, dataset, visual)
    result = {}
    for q_type in QUESTION_TYPES:
        idx = (dataset.question_types == QUESTION_TYPES.index(q_type)).nonzero().flatten().tolist()
        if idx:
            result[q_type] = sum(answers[i] == dataset.answers[i] for i in idx) / len(idx)
    return result
