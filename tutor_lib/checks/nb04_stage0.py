"""Checks for notebook 04_stage0: lm_pretraining_loss and clip_loss.

lm_pretraining_loss runs on a tiny LanguageModel whose forward refuses token ids, on a batch
of the real text corpus (64 scene slots) and on one with 9 slots (so a hard-coded 64 shows);
its value and its gradients must match the masked loss on logits[:, P:] to 1e-4. clip_loss is
compared with CLIP's symmetric InfoNCE on embeddings of very different norms at two
temperatures, on a perfect match, on its gradients, and must leave its inputs alone. When a
value is wrong, the message names the known mistake that gives exactly that value.
"""

from __future__ import annotations

import torch

from ..model import LanguageModel, ModelConfig
from ..vocab import IGNORE_INDEX
from . import trusted
from ._common import (
    CheckError,
    allclose,
    call,
    cross_entropy,
    equal,
    expect_close,
    expect_tensor,
    fail,
    isfinite,
    log_softmax,
    passed,
    quiet,
    register,
    short,
)

__all__ = ["check_lm_pretraining_loss", "check_clip_loss"]


def _first_match(received: object, candidates: dict[str, torch.Tensor], default: str) -> str:
    """The hint of the first known mistake whose value equals `received`, else `default`."""
    if not isinstance(received, torch.Tensor) or received.dim() != 0:
        return default
    value = received.detach().double().cpu()
    if not bool(isfinite(value)):
        return default
    for hint, wrong in candidates.items():
        if allclose(value, wrong.detach().double().cpu(), atol=1e-4, rtol=1e-4):
            return hint
    return default


def _expect_scalar(case: str, received: object, hint: str) -> torch.Tensor:
    expect_tensor(case, received)
    if received.dim() != 0:
        fail(case, "a 0-dimensional tensor: one loss for the whole batch", short(received), hint)
    if not received.is_floating_point():
        fail(case, "a floating-point tensor", f"dtype {received.dtype}", "a loss is a real number")
    return received


# -- lm_pretraining_loss --------------------------------------------------------------------------

_LM_HINT = ("ids = [scene ; text], embeddings = language_model.token_embedding(ids), logits = language_model(embeddings); "
            "position P + t predicts label t, so keep logits[:, P:] with P = scene_ids.shape[1], then the masked mean")
_TINY_LM = ModelConfig(image_size=24, patch_size=8, vision_dim=8, llm_dim=16, num_heads=2, num_layers=1)


class _EmbeddingsOnly(LanguageModel):
    """The real LanguageModel, but calling it with token ids fails with a message that says what it wants."""

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point() or embeddings.dim() != 3:
            what = short(embeddings)
            fail("language_model(...) reads embeddings", "a float tensor (B, P + L, llm_dim) of embeddings",
                 what + (" (token ids?)" if isinstance(embeddings, torch.Tensor) and not embeddings.is_floating_point() else ""),
                 "the language model takes embeddings, as in stage 1 where the image comes in as vectors: "
                 "look the ids up with language_model.token_embedding(ids) first")
        return super().forward(embeddings)


def _tiny_lm(seed: int) -> _EmbeddingsOnly:
    with trusted.fork_rng(devices=[]):
        trusted.manual_seed(seed)
        lm = _EmbeddingsOnly(_TINY_LM)
    # A trained LM is confident; a fresh one is close to uniform, where several mistakes give nearly the same number.
    with torch.no_grad():
        lm.output_head.weight.mul_(8.0)
    return lm.eval()


def _masked(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def _lm_logits(lm: LanguageModel, ids: torch.Tensor) -> torch.Tensor:
    return LanguageModel.forward(lm, lm.token_embedding(ids))


def _lm_wrong_values(lm, scenes, ids, labels) -> dict[str, torch.Tensor]:
    """What the typical mistakes return, keyed by the hint that names the mistake."""
    P = scenes.shape[1]
    logits = _lm_logits(lm, trusted.cat([scenes, ids], 1)).detach()  # (B, P + L, V)
    text = logits[:, P:]
    nll = log_softmax(text.double(), dim=-1).neg()  # (B, L, V)
    keep = labels != IGNORE_INDEX
    picked = nll.gather(-1, trusted.where(keep, labels, 0).unsqueeze(-1)).squeeze(-1) * keep  # (B, L)
    wrong = {
        "off by one: logits[:, P - 1:-1] makes the last scene slot predict label 0; position P + t predicts label t, "
        "so keep logits[:, P:] (the labels are already shifted)": _masked(logits[:, P - 1 : -1], labels),
        "off by one: logits[:, P + 1:] drops the prediction of label 0, made at position P (where <start> is read); "
        "keep logits[:, P:] and all the labels": _masked(logits[:, P + 1 :], labels[:, :-1]),
        "the text never sees the scene: either the scene is missing or it comes after the text, and a causal model "
        "reads only what comes before; feed ids = torch.cat([scene_ids, input_ids], dim=1), scene first as the image "
        "in stages 1 and 2": _masked(_lm_logits(lm, ids), labels),
        "the scene's positions are still in the logits: logits has P + L positions per sample and the labels L, "
        "so a flattened loss paired the labels with scene positions; keep logits[:, P:] first":
            _masked(logits.reshape(-1, logits.shape[-1])[: labels.numel()], labels),
        "that is the sum over the supervised tokens; the loss is their mean": picked.sum(),
        "that is a mean of per-sequence means; average over all supervised tokens of the batch at once":
            (picked.sum(1) / keep.sum(1)).mean(),
        "positions labelled -100 are counted in the mean: divide by the number of supervised labels only":
            picked.sum() / labels.numel(),
        "the labels are already shifted (label t is the token after input t): do not shift them again":
            _masked(text[:, :-1], labels[:, 1:]),
    }
    return wrong


def _run_lm(fn, case: str, lm, scenes, ids, labels):
    """fn(lm, scenes, ids, labels) quietly; an exception becomes a failure that explains a shape mismatch."""
    try:
        with quiet():
            return fn(lm, scenes.clone(), ids.clone(), labels.clone())
    except CheckError:
        raise
    except Exception as error:  # any error in student code is the student's to see
        text = f"{type(error).__name__}: {error}"
        P, L = scenes.shape[1], ids.shape[1]
        hint = _LM_HINT
        if any(word in str(error) for word in ("size", "shape", "match", "dimension")):
            hint = (f"a shape mismatch: the logits cover P + L = {P} + {L} positions, the labels only L = {L}; "
                    f"keep the text positions logits[:, P:] with P = scene_ids.shape[1] (here {P}, not a fixed number)")
        fail(case, "no exception", text[:300], hint)


def _lm_case(fn, case: str, lm, scenes, ids, labels) -> None:
    P = scenes.shape[1]
    expected = _masked(_lm_logits(lm, trusted.cat([scenes, ids], 1))[:, P:], labels).detach()
    received = _expect_scalar(case, _run_lm(fn, case, lm, scenes, ids, labels),
                              "average over every supervised label of the batch; return a scalar tensor")
    hint = _first_match(received, _lm_wrong_values(lm, scenes, ids, labels), _LM_HINT)
    expect_close(case, received, expected, atol=1e-4, rtol=1e-4, hint=hint)


def _corpus(n: int, image_size: int, seed: int):
    from ..pretrain import make_text_corpus  # imported on use: pretrain pulls in tqdm

    corpus = make_text_corpus(n, image_size=image_size, patch_size=8, seed=seed)
    return corpus.scenes, corpus.input_ids, corpus.labels


@register
def check_lm_pretraining_loss(lm_pretraining_loss) -> None:
    """Check lm_pretraining_loss(language_model, scene_ids (B, P), input_ids (B, L), labels (B, L)) -> scalar."""
    lm = _tiny_lm(404)
    scenes, ids, labels = _corpus(8, 64, seed=404)  # 64 slots, captions and questions: labels of 2 or 3 tokens
    _lm_case(lm_pretraining_loss, "a batch of 8 corpus samples: 64 scene slots, then captions and questions",
             lm, scenes, ids, labels)
    small = _corpus(6, 24, seed=405)  # 9 slots: a 24x24 image in 8x8 patches
    _lm_case(lm_pretraining_loss, "6 samples with a 9-slot scene (24x24 images)", lm, *small)

    case = "the inputs are left unchanged"
    before = [t.clone() for t in (scenes, ids, labels)]
    call(case, lm_pretraining_loss, lm, scenes, ids, labels)
    if not all(equal(a, b) for a, b in zip((scenes, ids, labels), before)):
        fail(case, "scene_ids, input_ids and labels as they were passed in", "one of them was modified in place",
             "labels[labels == -100] = 0 changes the caller's batch; use a boolean mask or torch.where instead")

    case = "gradients reach the language model's weights"
    lm.zero_grad(set_to_none=True)
    out = _run_lm(lm_pretraining_loss, case, lm, scenes, ids, labels)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        fail(case, "a loss that autograd can differentiate", "a tensor with requires_grad=False",
             "use torch operations only: no .item(), numpy, .detach() or torch.no_grad() inside the loss")
    call(case, out.backward)
    reference = _tiny_lm(404)
    _masked(_lm_logits(reference, trusted.cat([scenes, ids], 1))[:, scenes.shape[1]:], labels).backward()
    for (name, p), q in zip(lm.named_parameters(), reference.parameters()):
        if p.grad is None:
            fail(case, f"a gradient on language_model.{name}", "None", "keep every step of the loss in the graph")
        expect_close(f"{case}: language_model.{name}", p.grad, q.grad, atol=1e-5, rtol=1e-4,
                     hint="the gradient should be that of the masked mean loss on logits[:, P:]")
    passed("lm_pretraining_loss", "masked mean loss of the text after a 64-slot and a 9-slot scene, "
           "inputs unchanged, and the same gradients as the reference")


# -- clip_loss ------------------------------------------------------------------------------------

_CLIP_HINT = ("normalise both embeddings along the feature dimension (dim=-1), logits = image @ text.T / temperature, "
              "then the mean of cross_entropy(logits, arange(B)) and cross_entropy(logits.T, arange(B))")


def _clip_parts(image: torch.Tensor, text: torch.Tensor, temperature: float, normalise_dim: int | None = -1,
                scale: str = "divide") -> tuple[torch.Tensor, torch.Tensor]:
    """Image->text and text->image cross-entropies (float64), with a normalisation and a temperature rule."""
    image, text = image.double(), text.double()
    if normalise_dim is not None:
        image = image / image.norm(dim=normalise_dim, keepdim=True)
        text = text / text.norm(dim=normalise_dim, keepdim=True)
    sim = image @ text.T  # (B, B)
    logits = {"divide": sim / temperature, "multiply": sim * temperature, "none": sim}[scale]
    targets = trusted.arange(len(sim))
    return cross_entropy(logits, targets), cross_entropy(logits.T, targets)


def _clip_expected(image: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    i2t, t2i = _clip_parts(image, text, temperature)
    return (i2t + t2i) / 2


def _clip_wrong_values(image: torch.Tensor, text: torch.Tensor, temperature: float) -> dict[str, torch.Tensor]:
    i2t, t2i = _clip_parts(image, text, temperature)
    B = len(image)
    logits = (image.double() / image.double().norm(dim=-1, keepdim=True)) @ \
        (text.double() / text.double().norm(dim=-1, keepdim=True)).T / temperature
    wrong = {}
    for what, column in (("zeros", trusted.zeros(B, dtype=torch.long)), ("ones", trusted.ones(B, dtype=torch.long))):
        wrong[f"the labels are torch.{what}(B): image i matches text i, so the targets are torch.arange(B)"] = (
            cross_entropy(logits, column) + cross_entropy(logits.T, column)) / 2
    wrong |= {
        "only the image->text direction: CLIP also classifies each text among the images, "
        "cross_entropy(logits.T, labels), and averages the two": i2t,
        "only the text->image direction (or both softmaxes over the same dimension): average "
        "cross_entropy(logits, labels) (rows: image->text) and cross_entropy(logits.T, labels) (columns)": t2i,
        "that is the sum of the two directions; CLIP's loss is their mean, (image->text + text->image) / 2": i2t + t2i,
        "the embeddings are not normalised: cosine similarity needs unit vectors, F.normalize(x, dim=-1)":
            sum(_clip_parts(image, text, temperature, normalise_dim=None)) / 2,
        "normalised along the batch (dim=0): each embedding (row) must have norm 1, so normalise along dim=-1":
            sum(_clip_parts(image, text, temperature, normalise_dim=0)) / 2,
        "the temperature multiplies the similarities; divide by it (a small temperature sharpens the softmax)":
            sum(_clip_parts(image, text, temperature, scale="multiply")) / 2,
        "the temperature is missing: divide the cosine similarities by it": sum(_clip_parts(image, text, temperature,
                                                                                             scale="none")) / 2,
        "that is a sum over the B pairs; cross_entropy's default mean is the loss (or divide by B)": (i2t + t2i) / 2 * B,
        "the loss averages -log p over every entry of a row; only the matching pair counts (the diagonal, label i)":
            (-log_softmax(logits, dim=1).mean() - log_softmax(logits, dim=0).mean()) / 2,
    }
    return wrong


def _clip_case(fn, case: str, image: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    expected = _clip_expected(image, text, temperature)
    received = call(case, fn, image.clone(), text.clone(), temperature, hint=_CLIP_HINT)
    _expect_scalar(case, received, "average the per-pair losses: F.cross_entropy's default reduction is the mean")
    hint = _first_match(received, _clip_wrong_values(image, text, temperature), _CLIP_HINT)
    expect_close(case, received, expected, atol=1e-4, rtol=1e-4, hint=hint)
    return received


@register
def check_clip_loss(clip_loss) -> None:
    """Check clip_loss(image_emb (B, D), text_emb (B, D), temperature) -> scalar symmetric InfoNCE."""
    with trusted.fork_rng(devices=[]):
        trusted.manual_seed(505)
        image = trusted.randn(6, 8) * (0.5 + 4.5 * trusted.rand(6, 1))  # rows of norm about 1 to 14
        text = trusted.randn(6, 8) * (0.5 + 4.5 * trusted.rand(6, 1))
        text[:3] += 2 * image[:3]  # three pairs already roughly aligned, so the two directions differ clearly

    hand_image = torch.tensor([[3.0, 0.0], [0.0, 0.5], [2.0, 2.0]])
    hand_text = torch.tensor([[1.0, 0.5], [-1.0, 2.0], [0.0, 4.0]])
    _clip_case(clip_loss, "3 hand-made pairs in 2-D, temperature 0.5", hand_image, hand_text, 0.5)
    _clip_case(clip_loss, "6 random pairs (D = 8) with norms from 1 to 14, temperature 0.1", image, text, 0.1)
    _clip_case(clip_loss, "the same pairs, temperature 2.0", image, text, 2.0)
    perfect = _clip_case(clip_loss, "a perfect match: text = image = the 4 unit vectors, temperature 0.05",
                         trusted.eye(4), trusted.eye(4), 0.05)
    if float(perfect) > 1e-6:
        fail("a perfect match", "a loss below 1e-6", short(perfect), _CLIP_HINT)

    case = "the inputs are left unchanged"
    before = (image.clone(), text.clone())
    call(case, clip_loss, image, text, 0.1)
    if not (equal(image, before[0]) and equal(text, before[1])):
        fail(case, "image_emb and text_emb as they were passed in", "they were modified in place",
             "x /= x.norm(...) or x.div_(...) normalises the caller's tensors; write x = x / x.norm(...) or F.normalize(x)")

    case = "gradients with respect to both embeddings"
    x, y = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
    out = call(case, clip_loss, x, y, 0.1, hint="normalise out of place: F.normalize(x, dim=-1) or x / x.norm(...)")
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        fail(case, "a loss that autograd can differentiate", "a tensor with requires_grad=False",
             "use torch operations only: no .item(), numpy or .detach() inside clip_loss")
    call(case, out.backward)
    rx, ry = image.double().requires_grad_(True), text.double().requires_grad_(True)
    _clip_expected(rx, ry, 0.1).backward()
    for what, got, want in (("image_emb", x.grad, rx.grad), ("text_emb", y.grad, ry.grad)):
        if got is None:
            fail(f"{case}: {what}", "a gradient", "None", "keep both embeddings in the computation graph")
        expect_close(f"{case}: {what}", got, want, atol=1e-5, rtol=1e-4, hint="the gradient should be CLIP's loss's")
    passed("clip_loss", "symmetric InfoNCE on cosine similarities at temperatures 0.05, 0.1, 0.5 and 2.0, "
           "inputs unchanged, gradients right")
