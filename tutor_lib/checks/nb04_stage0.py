"""Checks for notebook 04_stage0: lm_pretraining_loss and clip_loss.

lm_pretraining_loss runs on a tiny LanguageModel whose forward refuses token ids, on a batch
of the real text corpus (64 scene slots) and on one with 9 slots (so a hard-coded 64 shows);
its value and its gradients must match the masked loss on logits[:, P:] to 1e-4. clip_loss is
compared with CLIP's symmetric InfoNCE on embeddings of very different norms at two
temperatures, on a perfect match, on its gradients, and must leave its inputs alone.

When a case fails, the exercise's catalogue (LM_PRETRAINING_LOSS_MISTAKES, CLIP_LOSS_MISTAKES)
runs on the same inputs, and the message names only the mistakes that pass the cases the
student's function passed and give exactly its result in the failing one (the same value to
1e-4, the same exception, the same inputs left behind).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses import masked_mean_nll
from ..model import LanguageModel, ModelConfig
from ..vocab import IGNORE_INDEX, PAD
from . import trusted
from ._common import (
    CheckError,
    Raised,
    allclose,
    call,
    cross_entropy,
    equal,
    expect_close,
    fail,
    isfinite,
    passed,
    quiet,
    raised,
    register,
    short,
)
from ._mistakes import Mistake, catalogue, matching

__all__ = ["check_lm_pretraining_loss", "check_clip_loss"]


class _Earlier(str):
    """A catalogue mistake that fails a case the student's function passed: it cannot be what the student wrote."""


def _outcome(fn, *args):
    """fn(*args) quietly, on copies of the tensors: its value, or what it raised."""
    try:
        with quiet():
            return fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
    except Exception as error:  # noqa: BLE001 - what it raises is part of what it does
        return raised(error)


def _same(a, b, atol: float = 1e-4) -> bool:
    """The same outcome: the same exception, or tensors of one shape and floating dtype equal to atol (rtol 1e-4)."""
    if isinstance(a, _Earlier) or isinstance(b, _Earlier):
        return False
    if isinstance(a, Raised) or isinstance(b, Raised):
        return isinstance(a, Raised) and isinstance(b, Raised) and a == b
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.is_floating_point() != b.is_floating_point():
            return False
        x, y = a.detach().double().cpu(), b.detach().double().cpu()
        return bool(isfinite(x).all()) and bool(isfinite(y).all()) and bool(allclose(x, y, atol=atol, rtol=1e-4))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= atol + 1e-4 * abs(b)
    return False


class _Diagnosis:
    """The cases a check has passed so far, to match a failure only with the mistakes that pass them too."""

    def __init__(self, mistakes: tuple[Mistake, ...]):
        self.mistakes = mistakes
        self.passed: list[tuple[tuple, torch.Tensor]] = []  # (arguments, expected value) of every value case passed

    def add(self, args: tuple, expected: torch.Tensor) -> None:
        """Record a passed case (copies of its tensors: a later case may change the caller's in place)."""
        self.passed.append((tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args), expected))

    def passes(self, fn) -> bool:
        with trusted.no_grad():
            return all(_same(_outcome(fn, *args), expected.float()) for args, expected in self.passed)

    def matches(self, outcome, received, same=_same) -> list[Mistake]:
        """The mistakes that pass the cases passed so far and whose outcome(fn) is `received`."""
        return matching(self.mistakes, lambda fn: outcome(fn) if self.passes(fn) else _Earlier(), received, same)


def _expect_scalar(case: str, received: object, hint: str, diagnose) -> torch.Tensor:
    """Fail unless received is a 0-dimensional floating-point tensor; diagnose() gives the matching mistakes."""
    if not isinstance(received, torch.Tensor):
        fail(case, "a torch.Tensor", f"{type(received).__name__}: {short(received)}", hint, matches=diagnose())
    if received.dim() != 0:
        fail(case, "a 0-dimensional tensor: one loss for the whole batch", short(received), hint, matches=diagnose())
    if not received.is_floating_point():
        fail(case, "a floating-point tensor", f"dtype {received.dtype}", "a loss is a real number", matches=diagnose())
    return received


def _expect_value(case: str, received: torch.Tensor, expected: torch.Tensor, hint: str, diagnose) -> None:
    """Fail unless received is finite and within 1e-4 of expected; diagnose() gives the matching mistakes."""
    got, want = received.detach().double().cpu(), expected.detach().double().cpu()
    shown = expected.detach().cpu().to(received.dtype)
    if not bool(isfinite(got).all()):
        fail(case, short(shown), f"{short(received)} (contains inf or nan)", hint, matches=diagnose())
    if not allclose(got, want, atol=1e-4, rtol=1e-4):
        worst = (got - want).abs().max().item()
        fail(case, short(shown), f"{short(received)} (largest difference {worst:.3g}, tolerance 0.0001)", hint,
             matches=diagnose())


def _graph_outcome(fn, *args):
    """Whether fn's result can be differentiated, and its value."""
    value = _outcome(fn, *args)
    return isinstance(value, torch.Tensor) and value.requires_grad, value


def _same_graph(a, b) -> bool:
    return a[0] == b[0] and _same(a[1], b[1])


def _inputs_after(fn, *args):
    """The tensor arguments as fn leaves them (fn runs on copies)."""
    copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    with quiet(), trusted.no_grad():
        fn(*copies)
    return tuple(c for c in copies if isinstance(c, torch.Tensor))


def _same_tensors(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and bool(equal(x, y)) for x, y in zip(a, b))


# -- lm_pretraining_loss: the catalogue -----------------------------------------------------------
# Each is a drop-in lm_pretraining_loss(language_model, scene_ids, input_ids, labels) with one mistake.

def _logits(language_model, ids):
    return language_model(language_model.token_embedding(ids))  # (B, T, V)


def _flat_cross_entropy(logits, labels, **kwargs):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), **kwargs)


def lm_one_position_early(language_model, scene_ids, input_ids, labels):
    P = scene_ids.shape[1]
    return masked_mean_nll(_logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, P - 1 : -1], labels)


def lm_one_position_late(language_model, scene_ids, input_ids, labels):
    P = scene_ids.shape[1]
    return masked_mean_nll(_logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, P + 1 :], labels[:, :-1])


def lm_text_before_scene(language_model, scene_ids, input_ids, labels):
    logits = _logits(language_model, torch.cat([input_ids, scene_ids], 1))
    return masked_mean_nll(logits[:, : input_ids.shape[1]], labels)


def lm_without_scene(language_model, scene_ids, input_ids, labels):
    return masked_mean_nll(_logits(language_model, input_ids), labels)


def lm_labels_shifted_again(language_model, scene_ids, input_ids, labels):
    P = scene_ids.shape[1]
    return masked_mean_nll(_logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, P:-1], labels[:, 1:])


def _text_nll(language_model, scene_ids, input_ids, labels):
    """-log p(label) at every text position (0 where the label is -100), and the mask of supervised labels."""
    logits = _logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, scene_ids.shape[1]:]
    keep = labels != IGNORE_INDEX
    nll = -F.log_softmax(logits, -1).gather(-1, torch.where(keep, labels, 0).unsqueeze(-1)).squeeze(-1)
    return nll * keep, keep


def lm_sum(language_model, scene_ids, input_ids, labels):
    nll, _ = _text_nll(language_model, scene_ids, input_ids, labels)
    return nll.sum()


def lm_mean_of_sequence_means(language_model, scene_ids, input_ids, labels):
    nll, keep = _text_nll(language_model, scene_ids, input_ids, labels)
    return (nll.sum(1) / keep.sum(1)).mean()


def lm_ignored_counted(language_model, scene_ids, input_ids, labels):
    nll, _ = _text_nll(language_model, scene_ids, input_ids, labels)
    return nll.sum() / labels.numel()


def lm_raw_logits(language_model, scene_ids, input_ids, labels):
    logits = _logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, scene_ids.shape[1]:]
    keep = labels != IGNORE_INDEX
    picked = logits.gather(-1, torch.where(keep, labels, 0).unsqueeze(-1)).squeeze(-1)
    return -(picked * keep).sum() / keep.sum()


def lm_scene_positions_flattened(language_model, scene_ids, input_ids, labels):
    logits = _logits(language_model, torch.cat([scene_ids, input_ids], 1))
    return _flat_cross_entropy(logits.reshape(-1, logits.shape[-1])[: labels.numel()], labels)


def lm_not_sliced(language_model, scene_ids, input_ids, labels):
    return masked_mean_nll(_logits(language_model, torch.cat([scene_ids, input_ids], 1)), labels)


def lm_not_sliced_cross_entropy(language_model, scene_ids, input_ids, labels):
    return _flat_cross_entropy(_logits(language_model, torch.cat([scene_ids, input_ids], 1)), labels)


def lm_hard_coded_64(language_model, scene_ids, input_ids, labels):
    return masked_mean_nll(_logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, 64:], labels)


def lm_hard_coded_64_cross_entropy(language_model, scene_ids, input_ids, labels):
    return _flat_cross_entropy(_logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, 64:], labels)


def lm_sliced_at_L(language_model, scene_ids, input_ids, labels):
    L = input_ids.shape[1]
    return masked_mean_nll(_logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, L:], labels)


def lm_ignore_index_pad(language_model, scene_ids, input_ids, labels):
    logits = _logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, scene_ids.shape[1]:]
    return _flat_cross_entropy(logits, labels, ignore_index=PAD)


def lm_ids_into_the_model(language_model, scene_ids, input_ids, labels):
    logits = language_model(torch.cat([scene_ids, input_ids], 1))
    return masked_mean_nll(logits[:, scene_ids.shape[1]:], labels)


def lm_labels_changed_in_place(language_model, scene_ids, input_ids, labels):
    keep = labels != IGNORE_INDEX
    labels[labels == IGNORE_INDEX] = 0
    logits = _logits(language_model, torch.cat([scene_ids, input_ids], 1))[:, scene_ids.shape[1]:]
    nll = -F.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (nll * keep).sum() / keep.sum()


def lm_no_graph(language_model, scene_ids, input_ids, labels):
    with torch.no_grad():
        logits = _logits(language_model, torch.cat([scene_ids, input_ids], 1))
        return masked_mean_nll(logits[:, scene_ids.shape[1]:], labels)


_SLICE = "position P + t predicts label t (the labels are already shifted): keep logits[:, P:] with P = scene_ids.shape[1]"
_SCENE_FIRST = ("feed ids = torch.cat([scene_ids, input_ids], dim=1): the scene first, where the image goes in stages 1 "
                "and 2; a causal model reads only what comes before")
_MEAN = "the loss is the mean of -log p over every supervised label of the batch (labels != -100), all at once"
LM_PRETRAINING_LOSS_MISTAKES = catalogue(
    "lm_pretraining_loss",
    Mistake("logits sliced one position early: logits[:, P - 1:-1]", lm_one_position_early, _SLICE),
    Mistake("logits sliced one position late: logits[:, P + 1:]", lm_one_position_late,
            f"the prediction of label 0 is made at position P, where <start> is read: {_SLICE}"),
    Mistake("the text placed before the scene", lm_text_before_scene, _SCENE_FIRST),
    Mistake("the scene left out: the text alone", lm_without_scene, _SCENE_FIRST),
    Mistake("the labels shifted a second time", lm_labels_shifted_again,
            "label t is already the token after input t: do not shift the labels again; " + _SLICE),
    Mistake("the sum over the supervised labels, not their mean", lm_sum, _MEAN),
    Mistake("a mean of per-sequence means", lm_mean_of_sequence_means, _MEAN),
    Mistake("positions labelled -100 counted in the mean", lm_ignored_counted,
            "divide by the number of supervised labels only: (labels != -100).sum()"),
    Mistake("raw logits instead of log-probabilities", lm_raw_logits,
            "-log p needs log_softmax over the vocabulary first (or F.cross_entropy, which includes it)"),
    Mistake("the flattened logits cut to the labels' length, scene positions included",
            lm_scene_positions_flattened, "slice the text positions first, then flatten: " + _SLICE),
    Mistake("logits not sliced to the text: logits[:, P:] missing", lm_not_sliced,
            "the logits cover P + L positions and the labels L: " + _SLICE),
    Mistake("logits not sliced to the text before F.cross_entropy", lm_not_sliced_cross_entropy,
            "the logits cover P + L positions and the labels L: " + _SLICE),
    Mistake("a hard-coded P = 64: logits[:, 64:]", lm_hard_coded_64,
            "P is scene_ids.shape[1]: 64 for the course's 64x64 images, 9 in this case"),
    Mistake("a hard-coded P = 64: logits[:, 64:] before F.cross_entropy", lm_hard_coded_64_cross_entropy,
            "P is scene_ids.shape[1]: 64 for the course's 64x64 images, 9 in this case"),
    Mistake("sliced at L instead of P: logits[:, L:]", lm_sliced_at_L,
            "P is the number of scene slots, scene_ids.shape[1]; " + _SLICE),
    Mistake("ignore_index set to PAD (0) instead of -100", lm_ignore_index_pad,
            "the labels mark unsupervised positions with -100 (IGNORE_INDEX): ignore_index=-100, F.cross_entropy's default"),
    Mistake("token ids passed to the language model", lm_ids_into_the_model,
            "the language model takes embeddings, as in stage 1 where the image comes in as vectors: "
            "look the ids up with language_model.token_embedding(ids) first"),
    Mistake("labels[labels == -100] = 0: the caller's labels changed in place", lm_labels_changed_in_place,
            "use a boolean mask or torch.where(keep, labels, 0), which make a new tensor"),
    Mistake("the loss cut from the graph (torch.no_grad(), .detach() or .item())", lm_no_graph,
            "use torch operations only, with no torch.no_grad(), .detach() or .item(): training needs the gradient"),
)


# -- lm_pretraining_loss: the check ---------------------------------------------------------------

_LM_HINT = ("ids = [scene ; text], embeddings = language_model.token_embedding(ids), logits = language_model(embeddings); "
            "position P + t predicts label t, so keep logits[:, P:] with P = scene_ids.shape[1], then the masked mean")
_TINY_LM = ModelConfig(image_size=24, patch_size=8, vision_dim=8, llm_dim=16, num_heads=2, num_layers=1)


class _NotEmbeddings(Exception):
    """The language model was called with something else than embeddings (raised by _EmbeddingsOnly)."""


class _EmbeddingsOnly(LanguageModel):
    """The real LanguageModel, but calling it with token ids fails with a message that says what it wants."""

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point() or embeddings.dim() != 3:
            integers = isinstance(embeddings, torch.Tensor) and not embeddings.is_floating_point()
            raise _NotEmbeddings(short(embeddings) + (" (integers, not embeddings)" if integers else ""))
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


def _lm_expected(lm, scenes, ids, labels) -> torch.Tensor:
    return _masked(_lm_logits(lm, trusted.cat([scenes, ids], 1))[:, scenes.shape[1]:], labels)


def _run_lm(fn, case: str, diagnosis: _Diagnosis, lm, scenes, ids, labels):
    """fn(lm, scenes, ids, labels) quietly; an exception becomes a failure naming the mistakes that raise the same."""
    try:
        with quiet():
            return fn(lm, scenes.clone(), ids.clone(), labels.clone())
    except CheckError:
        raise
    except NotImplementedError:
        return call(case, fn, lm, scenes, ids, labels, hint=_LM_HINT)  # the stub's message
    except Exception as error:  # any error in student code is the student's to see
        what = raised(error)
        matches = diagnosis.matches(lambda f: _outcome(f, lm, scenes, ids, labels), what)
        if isinstance(error, _NotEmbeddings):
            fail("language_model(...) reads embeddings", "a float tensor (B, P + L, llm_dim) of embeddings", str(error),
                 "the language model takes embeddings: language_model.token_embedding(ids) gives them",
                 matches=matches)
        P, L = scenes.shape[1], ids.shape[1]
        hint = _LM_HINT
        if any(word in str(error) for word in ("size", "shape", "match", "dimension")):  # the error is about shapes
            hint = (f"the logits cover P + L = {P} + {L} positions and the labels L = {L}: the loss reads the text "
                    f"positions, logits[:, P:] with P = scene_ids.shape[1] (here {P})")
        fail(case, "no exception", f"{what}"[:300], hint, matches=matches)


def _lm_case(fn, case: str, diagnosis: _Diagnosis, lm, scenes, ids, labels) -> None:
    expected = _lm_expected(lm, scenes, ids, labels).detach()
    received = _run_lm(fn, case, diagnosis, lm, scenes, ids, labels)

    def diagnose():
        with trusted.no_grad():
            return diagnosis.matches(lambda f: _outcome(f, lm, scenes, ids, labels), received)

    _expect_scalar(case, received, "average over every supervised label of the batch; return a scalar tensor", diagnose)
    _expect_value(case, received, expected, _LM_HINT, diagnose)
    diagnosis.add((lm, scenes, ids, labels), expected)


def _corpus(n: int, image_size: int, seed: int):
    from ..pretrain import make_text_corpus  # imported on use: pretrain pulls in tqdm

    corpus = make_text_corpus(n, image_size=image_size, patch_size=8, seed=seed)
    return corpus.scenes, corpus.input_ids, corpus.labels


@register
def check_lm_pretraining_loss(lm_pretraining_loss) -> None:
    """Check lm_pretraining_loss(language_model, scene_ids (B, P), input_ids (B, L), labels (B, L)) -> scalar."""
    diagnosis = _Diagnosis(LM_PRETRAINING_LOSS_MISTAKES)
    lm = _tiny_lm(404)
    scenes, ids, labels = _corpus(8, 64, seed=404)  # 64 slots, captions and questions: labels of 2 or 3 tokens
    _lm_case(lm_pretraining_loss, "a batch of 8 corpus samples: 64 scene slots, then captions and questions",
             diagnosis, lm, scenes, ids, labels)
    small = _corpus(6, 24, seed=405)  # 9 slots: a 24x24 image in 8x8 patches
    _lm_case(lm_pretraining_loss, "6 samples with a 9-slot scene (24x24 images)", diagnosis, lm, *small)

    case = "the inputs are left unchanged"
    before = [t.clone() for t in (scenes, ids, labels)]
    call(case, lm_pretraining_loss, lm, scenes, ids, labels)
    if not all(equal(a, b) for a, b in zip((scenes, ids, labels), before)):
        changed = [name for name, a, b in zip(("scene_ids", "input_ids", "labels"), (scenes, ids, labels), before)
                   if not equal(a, b)]
        received = tuple(t.clone() for t in (scenes, ids, labels))
        fail(case, "scene_ids, input_ids and labels as they were passed in", f"{', '.join(changed)} modified in place",
             "compute on new tensors (a boolean mask, torch.where) and leave the caller's batch as it was",
             matches=diagnosis.matches(lambda f: _inputs_after(f, lm, *before), received, _same_tensors))

    case = "gradients reach the language model's weights"
    lm.zero_grad(set_to_none=True)
    out = _run_lm(lm_pretraining_loss, case, diagnosis, lm, scenes, ids, labels)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        fail(case, "a loss that autograd can differentiate", "a tensor with requires_grad=False",
             "every step of the loss stays in autograd's graph: look for what builds a new tensor from its values",
             matches=diagnosis.matches(lambda f: _graph_outcome(f, lm, scenes, ids, labels), (False, out), _same_graph))
    call(case, out.backward)
    reference = _tiny_lm(404)
    _lm_expected(reference, scenes, ids, labels).backward()
    for (name, p), q in zip(lm.named_parameters(), reference.parameters()):
        if p.grad is None:
            fail(case, f"a gradient on language_model.{name}", "None", "keep every step of the loss in the graph")
        expect_close(f"{case}: language_model.{name}", p.grad, q.grad, atol=1e-5, rtol=1e-4,
                     hint="the gradient should be that of the masked mean loss on logits[:, P:]")
    passed("lm_pretraining_loss", "masked mean loss of the text after a 64-slot and a 9-slot scene, "
           "inputs unchanged, and the same gradients as the reference")


# -- clip_loss: the catalogue ---------------------------------------------------------------------
# Each is a drop-in clip_loss(image_emb, text_emb, temperature) with one mistake.

def _clip_logits(image_emb, text_emb, temperature):
    return F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T / temperature  # (B, B)


def _both_directions(logits, **kwargs):
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels, **kwargs) + F.cross_entropy(logits.T, labels, **kwargs)) / 2


def clip_image_to_text_only(image_emb, text_emb, temperature):
    logits = _clip_logits(image_emb, text_emb, temperature)
    return F.cross_entropy(logits, torch.arange(len(logits)))


def clip_text_to_image_only(image_emb, text_emb, temperature):
    logits = _clip_logits(image_emb, text_emb, temperature)
    return F.cross_entropy(logits.T, torch.arange(len(logits)))


def clip_same_softmax_twice(image_emb, text_emb, temperature):
    log_p = F.log_softmax(_clip_logits(image_emb, text_emb, temperature), dim=0)  # both over the images
    return -(log_p.diag().mean() + log_p.T.diag().mean()) / 2


def clip_directions_summed(image_emb, text_emb, temperature):
    return 2 * _both_directions(_clip_logits(image_emb, text_emb, temperature))


def clip_not_normalised(image_emb, text_emb, temperature):
    return _both_directions(image_emb @ text_emb.T / temperature)


def clip_normalised_along_batch(image_emb, text_emb, temperature):
    return _both_directions(F.normalize(image_emb, dim=0) @ F.normalize(text_emb, dim=0).T / temperature)


def clip_only_image_normalised(image_emb, text_emb, temperature):
    return _both_directions(F.normalize(image_emb, dim=-1) @ text_emb.T / temperature)


def clip_squared_norm(image_emb, text_emb, temperature):
    image = image_emb / (image_emb**2).sum(-1, keepdim=True)
    text = text_emb / (text_emb**2).sum(-1, keepdim=True)
    return _both_directions(image @ text.T / temperature)


def _with_labels(logits, labels):
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clip_labels_zeros(image_emb, text_emb, temperature):
    return _with_labels(_clip_logits(image_emb, text_emb, temperature), torch.zeros(len(image_emb), dtype=torch.long))


def clip_labels_ones(image_emb, text_emb, temperature):
    return _with_labels(_clip_logits(image_emb, text_emb, temperature), torch.ones(len(image_emb), dtype=torch.long))


def clip_temperature_multiplied(image_emb, text_emb, temperature):
    return _both_directions(_clip_logits(image_emb, text_emb, 1.0) * temperature)


def clip_no_temperature(image_emb, text_emb, temperature):
    return _both_directions(_clip_logits(image_emb, text_emb, 1.0))


def clip_summed_over_pairs(image_emb, text_emb, temperature):
    return _both_directions(_clip_logits(image_emb, text_emb, temperature), reduction="sum")


def clip_per_pair_losses(image_emb, text_emb, temperature):
    return _both_directions(_clip_logits(image_emb, text_emb, temperature), reduction="none")


def clip_mean_over_whole_row(image_emb, text_emb, temperature):
    logits = _clip_logits(image_emb, text_emb, temperature)
    return -(F.log_softmax(logits, dim=1).mean() + F.log_softmax(logits, dim=0).mean()) / 2


def clip_text_not_transposed(image_emb, text_emb, temperature):
    return _both_directions(F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1) / temperature)


def clip_normalised_in_place(image_emb, text_emb, temperature):
    image_emb /= image_emb.norm(dim=-1, keepdim=True)
    text_emb /= text_emb.norm(dim=-1, keepdim=True)
    return _both_directions(image_emb @ text_emb.T / temperature)


def clip_no_graph(image_emb, text_emb, temperature):
    with torch.no_grad():
        return _both_directions(_clip_logits(image_emb, text_emb, temperature))


_BOTH = "the mean of cross_entropy(logits, labels) (image->text, rows) and cross_entropy(logits.T, labels) (text->image)"
_UNIT = "cosine similarity needs unit rows: F.normalize(x, dim=-1) for both embeddings"
_TEMPERATURE = "logits = cosine similarities / temperature (a small temperature sharpens the softmax)"
CLIP_LOSS_MISTAKES = catalogue(
    "clip_loss",
    Mistake("only the image->text direction", clip_image_to_text_only, "CLIP is symmetric: " + _BOTH),
    Mistake("only the text->image direction", clip_text_to_image_only, "CLIP is symmetric: " + _BOTH),
    Mistake("both directions' softmax over the same dimension", clip_same_softmax_twice,
            "image->text normalises each row (dim=1), text->image each column (dim=0): " + _BOTH),
    Mistake("the two directions summed, not averaged", clip_directions_summed, _BOTH),
    Mistake("the embeddings not normalised", clip_not_normalised, _UNIT),
    Mistake("normalised along the batch (dim=0)", clip_normalised_along_batch,
            "each embedding (row) gets norm 1: normalise along dim=-1"),
    Mistake("only the image embeddings normalised", clip_only_image_normalised, _UNIT),
    Mistake("divided by the squared norm", clip_squared_norm,
            "a unit vector is x / ||x||, the norm itself: F.normalize(x, dim=-1) or x / x.norm(dim=-1, keepdim=True)"),
    Mistake("the labels are torch.zeros(B)", clip_labels_zeros,
            "image i matches text i: the targets are torch.arange(B)"),
    Mistake("the labels are torch.ones(B)", clip_labels_ones, "image i matches text i: the targets are torch.arange(B)"),
    Mistake("the temperature multiplies the similarities", clip_temperature_multiplied, _TEMPERATURE),
    Mistake("the temperature left out", clip_no_temperature, _TEMPERATURE),
    Mistake("a sum over the B pairs (reduction='sum')", clip_summed_over_pairs,
            "the loss is the mean over the pairs: F.cross_entropy's default reduction"),
    Mistake("the per-pair losses returned (reduction='none')", clip_per_pair_losses,
            "return one number: F.cross_entropy's default reduction averages over the pairs"),
    Mistake("-log p averaged over every entry of a row", clip_mean_over_whole_row,
            "only the matching pair counts: -log p of the diagonal (label i), as cross_entropy(logits, arange(B))"),
    Mistake("text_emb not transposed: image @ text", clip_text_not_transposed,
            "the (B, B) similarities are image_emb @ text_emb.T"),
    Mistake("the embeddings normalised in place (x /= x.norm(...))", clip_normalised_in_place,
            "x /= ... or x.div_(...) changes the caller's tensors; write x = x / x.norm(...) or F.normalize(x, dim=-1)"),
    Mistake("the loss cut from the graph (torch.no_grad(), .detach() or .item())", clip_no_graph,
            "use torch operations only, with no torch.no_grad(), .detach() or .item(): training needs the gradient"),
)


# -- clip_loss: the check -------------------------------------------------------------------------

_CLIP_HINT = ("normalise both embeddings along the feature dimension (dim=-1), logits = image @ text.T / temperature, "
              "then the mean of cross_entropy(logits, arange(B)) and cross_entropy(logits.T, arange(B))")


def _clip_expected(image: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's loss in float64."""
    image, text = image.double(), text.double()
    logits = (image / image.norm(dim=-1, keepdim=True)) @ (text / text.norm(dim=-1, keepdim=True)).T / temperature
    targets = trusted.arange(len(logits))
    return (cross_entropy(logits, targets) + cross_entropy(logits.T, targets)) / 2


def _clip_case(fn, case: str, diagnosis: _Diagnosis, image: torch.Tensor, text: torch.Tensor,
               temperature: float) -> torch.Tensor:
    expected = _clip_expected(image, text, temperature)
    try:
        with quiet():
            received = fn(image.clone(), text.clone(), temperature)
    except CheckError:
        raise
    except NotImplementedError:
        received = call(case, fn, image.clone(), text.clone(), temperature, hint=_CLIP_HINT)  # the stub's message
    except Exception as error:  # any error in student code is the student's to see
        what = raised(error)
        fail(case, "no exception", what, _CLIP_HINT,
             matches=diagnosis.matches(lambda f: _outcome(f, image, text, temperature), what))

    def diagnose():
        with trusted.no_grad():
            return diagnosis.matches(lambda f: _outcome(f, image, text, temperature), received)

    _expect_scalar(case, received, "one loss for the batch: F.cross_entropy's default reduction is the mean", diagnose)
    _expect_value(case, received, expected, _CLIP_HINT, diagnose)
    diagnosis.add((image, text, temperature), expected)
    return received


@register
def check_clip_loss(clip_loss) -> None:
    """Check clip_loss(image_emb (B, D), text_emb (B, D), temperature) -> scalar symmetric InfoNCE."""
    diagnosis = _Diagnosis(CLIP_LOSS_MISTAKES)
    with trusted.fork_rng(devices=[]):
        trusted.manual_seed(505)
        image = trusted.randn(6, 8) * (0.5 + 4.5 * trusted.rand(6, 1))  # rows of norm about 1 to 14
        text = trusted.randn(6, 8) * (0.5 + 4.5 * trusted.rand(6, 1))
        text[:3] += 2 * image[:3]  # three pairs already roughly aligned, so the two directions differ clearly

    hand_image = torch.tensor([[3.0, 0.0], [0.0, 0.5], [2.0, 2.0]])
    hand_text = torch.tensor([[1.0, 0.5], [-1.0, 2.0], [0.0, 4.0]])
    _clip_case(clip_loss, "3 hand-made pairs in 2-D, temperature 0.5", diagnosis, hand_image, hand_text, 0.5)
    _clip_case(clip_loss, "6 random pairs (D = 8) with norms from 1 to 14, temperature 0.1", diagnosis, image, text, 0.1)
    _clip_case(clip_loss, "the same pairs, temperature 2.0", diagnosis, image, text, 2.0)
    perfect = _clip_case(clip_loss, "a perfect match: text = image = the 4 unit vectors, temperature 0.05",
                         diagnosis, trusted.eye(4), trusted.eye(4), 0.05)
    if float(perfect) > 1e-6:
        fail("a perfect match", "a loss below 1e-6", short(perfect), _CLIP_HINT)

    case = "the inputs are left unchanged"
    before = (image.clone(), text.clone())
    call(case, clip_loss, image, text, 0.1)
    if not (equal(image, before[0]) and equal(text, before[1])):
        changed = [name for name, a, b in zip(("image_emb", "text_emb"), (image, text), before) if not equal(a, b)]
        fail(case, "image_emb and text_emb as they were passed in", f"{' and '.join(changed)} modified in place",
             "compute on new tensors (x = x / x.norm(...) or F.normalize) and leave the caller's as they were",
             matches=diagnosis.matches(lambda f: _inputs_after(f, *before, 0.1), (image.clone(), text.clone()),
                                       _same_tensors))

    case = "gradients with respect to both embeddings"
    x, y = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
    out = call(case, clip_loss, x, y, 0.1, hint="clip_loss(image_emb, text_emb, 0.1) on embeddings that require grad")
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        fail(case, "a loss that autograd can differentiate", "a tensor with requires_grad=False",
             "every step of the loss stays in autograd's graph: look for what builds a new tensor from its values",
             matches=diagnosis.matches(lambda f: _graph_outcome(f, image.clone().requires_grad_(True), text, 0.1),
                                       (False, out), _same_graph))
    call(case, out.backward)
    rx, ry = image.double().requires_grad_(True), text.double().requires_grad_(True)
    _clip_expected(rx, ry, 0.1).backward()
    for what, got, want in (("image_emb", x.grad, rx.grad), ("text_emb", y.grad, ry.grad)):
        if got is None:
            fail(f"{case}: {what}", "a gradient", "None", "keep both embeddings in the computation graph")
        expect_close(f"{case}: {what}", got, want, atol=1e-5, rtol=1e-4, hint="the gradient should be CLIP's loss's")
    passed("clip_loss", "symmetric InfoNCE on cosine similarities at temperatures 0.05, 0.1, 0.5 and 2.0, "
           "inputs unchanged, gradients right")
