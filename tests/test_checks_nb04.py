"""The checks of 04_stage0 reject the mistakes students make and accept every correct variant."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from check_assertions import assert_accepts, assert_rejects

import tutor_lib.checks as checks
import tutor_lib.pretrain
from tutor_lib.checks import CheckError, check_clip_loss, check_lm_pretraining_loss
from tutor_lib.checks.nb04_stage0 import CLIP_LOSS_MISTAKES, LM_PRETRAINING_LOSS_MISTAKES
from tutor_lib.losses import masked_mean_nll
from tutor_lib.vocab import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")  # as the notebooks run (tests/conftest.py)

CLIP = {m.fn.__name__: m.name for m in CLIP_LOSS_MISTAKES}  # catalogue function -> mistake name
LM = {m.fn.__name__: m.name for m in LM_PRETRAINING_LOSS_MISTAKES}


# -- clip_loss: correct variants --------------------------------------------------------------------


def clip_normalize_cross_entropy(image_emb, text_emb, temperature):
    image_emb, text_emb = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    logits = image_emb @ text_emb.T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clip_log_softmax_diag(image_emb, text_emb, temperature):
    image_emb = image_emb / image_emb.norm(dim=1, keepdim=True)
    text_emb = text_emb / text_emb.norm(dim=1, keepdim=True)
    logits = image_emb @ text_emb.T / temperature
    i2t = -F.log_softmax(logits, dim=1).diag().mean()
    t2i = -F.log_softmax(logits, dim=0).diag().mean()
    return 0.5 * (i2t + t2i)


def clip_norms_by_hand_text_first(image_emb, text_emb, temperature):
    image_unit = image_emb / torch.sqrt((image_emb**2).sum(-1, keepdim=True))
    text_unit = text_emb / torch.sqrt((text_emb**2).sum(-1, keepdim=True))
    labels = torch.arange(image_emb.shape[0])
    logits_per_image = image_unit @ text_unit.T / temperature
    logits_per_text = text_unit @ image_unit.T / temperature
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def clip_cosine_similarity_loop(image_emb, text_emb, temperature):
    sim = F.cosine_similarity(image_emb[:, None, :], text_emb[None, :, :], dim=-1) / temperature  # (B, B)
    losses = []
    for i in range(len(sim)):
        losses.append(torch.logsumexp(sim[i], 0) - sim[i, i])
        losses.append(torch.logsumexp(sim[:, i], 0) - sim[i, i])
    return torch.stack(losses).mean()


# -- clip_loss: typical mistakes -------------------------------------------------------------------

def _unit(x):
    return F.normalize(x, dim=-1)


def clip_one_direction(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits)))


def clip_same_softmax_twice(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    log_p = F.log_softmax(logits, dim=0)  # both "directions" normalise over the images
    return -(log_p.diag().mean() + log_p.T.diag().mean()) / 2


def clip_no_normalisation(image_emb, text_emb, temperature):
    logits = image_emb @ text_emb.T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clip_normalise_batch_dim(image_emb, text_emb, temperature):
    logits = F.normalize(image_emb, dim=0) @ F.normalize(text_emb, dim=0).T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _with_labels(labels_of):
    def clip(image_emb, text_emb, temperature):
        logits = _unit(image_emb) @ _unit(text_emb).T / temperature
        labels = labels_of(len(logits))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return clip


clip_labels_zeros = _with_labels(lambda b: torch.zeros(b, dtype=torch.long))
clip_labels_ones = _with_labels(lambda b: torch.ones(b, dtype=torch.long))


def clip_temperature_multiplied(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T * temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clip_no_temperature(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clip_summed_directions(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    labels = torch.arange(len(logits))
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


def clip_sum_over_pairs(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels, reduction="sum") + F.cross_entropy(logits.T, labels, reduction="sum")) / 2


def clip_mean_over_whole_row(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    return -(F.log_softmax(logits, dim=1).mean() + F.log_softmax(logits, dim=0).mean()) / 2


def clip_in_place_normalisation(image_emb, text_emb, temperature):
    image_emb /= image_emb.norm(dim=-1, keepdim=True)
    text_emb /= text_emb.norm(dim=-1, keepdim=True)
    logits = image_emb @ text_emb.T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clip_per_pair_losses(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels, reduction="none") + F.cross_entropy(logits.T, labels, reduction="none")) / 2


def clip_item(image_emb, text_emb, temperature):
    return torch.tensor(clip_normalize_cross_entropy(image_emb, text_emb, temperature).item())


def clip_text_only_normalised_image_by_hand(image_emb, text_emb, temperature):
    image_unit = image_emb / image_emb.norm(dim=1, keepdim=True)  # the text is never normalised
    return _both(image_unit @ text_emb.T / temperature)


def clip_squared_norms(image_emb, text_emb, temperature):
    image_unit = image_emb / image_emb.pow(2).sum(1, keepdim=True)
    text_unit = text_emb / text_emb.pow(2).sum(1, keepdim=True)
    return _both(image_unit @ text_unit.T / temperature)


def clip_matmul_without_transpose(image_emb, text_emb, temperature):
    return _both(torch.matmul(_unit(image_emb), _unit(text_emb)) / temperature)


def clip_detached_logits(image_emb, text_emb, temperature):
    return _both((_unit(image_emb) @ _unit(text_emb).T / temperature).detach())


def _both(logits):
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


# -- clip_loss: mistakes that are in no catalogue (their message must name none) ---------------------

def clip_label_smoothing(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels, label_smoothing=0.1) + F.cross_entropy(logits.T, labels,
                                                                                   label_smoothing=0.1)) / 2


def clip_exp_temperature(image_emb, text_emb, temperature):
    return _both(_unit(image_emb) @ _unit(text_emb).T * torch.exp(torch.tensor(1 / temperature)).log1p())


def clip_geometric_mean(image_emb, text_emb, temperature):
    logits = _unit(image_emb) @ _unit(text_emb).T / temperature
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) * F.cross_entropy(logits.T, labels)).sqrt()


def clip_euclidean(image_emb, text_emb, temperature):
    return _both(-torch.cdist(_unit(image_emb), _unit(text_emb)) / temperature)


@pytest.mark.parametrize("fn", [clip_normalize_cross_entropy, clip_log_softmax_diag, clip_norms_by_hand_text_first,
                                clip_cosine_similarity_loop, tutor_lib.pretrain.clip_loss])
def test_clip_loss_accepts_correct_variants(fn, capsys):
    assert_accepts(check_clip_loss, fn, capsys, "clip_loss")


@pytest.mark.parametrize("fn, fragments, names", [
    (clip_one_direction, ["3 hand-made pairs", "CLIP is symmetric"], CLIP["clip_image_to_text_only"]),
    (clip_same_softmax_twice, ["3 hand-made pairs", "CLIP is symmetric"],
     (CLIP["clip_same_softmax_twice"], CLIP["clip_text_to_image_only"])),  # the same value: both are named
    (clip_no_normalisation, ["3 hand-made pairs", "F.normalize(x, dim=-1)"], CLIP["clip_not_normalised"]),
    (clip_normalise_batch_dim, ["3 hand-made pairs", "normalise along dim=-1"], CLIP["clip_normalised_along_batch"]),
    (clip_labels_zeros, ["3 hand-made pairs", "torch.zeros(B)", "torch.arange(B)"], CLIP["clip_labels_zeros"]),
    (clip_labels_ones, ["3 hand-made pairs", "torch.ones(B)", "torch.arange(B)"], CLIP["clip_labels_ones"]),
    (clip_temperature_multiplied, ["3 hand-made pairs", "similarities / temperature"],
     CLIP["clip_temperature_multiplied"]),
    (clip_no_temperature, ["3 hand-made pairs", "temperature left out"], CLIP["clip_no_temperature"]),
    (clip_summed_directions, ["3 hand-made pairs", "summed, not averaged", "the mean of"], CLIP["clip_directions_summed"]),
    (clip_sum_over_pairs, ["3 hand-made pairs", "sum over the B pairs"], CLIP["clip_summed_over_pairs"]),
    (clip_mean_over_whole_row, ["3 hand-made pairs", "every entry of a row", "diagonal"],
     CLIP["clip_mean_over_whole_row"]),
    (clip_in_place_normalisation, ["inputs are left unchanged", "modified in place", "F.normalize"],
     CLIP["clip_normalised_in_place"]),
    (clip_per_pair_losses, ["3 hand-made pairs", "0-dimensional", "shape (3,)"], CLIP["clip_per_pair_losses"]),
    (clip_item, ["gradients", "requires_grad=False", ".item()"], CLIP["clip_no_graph"]),
    (clip_text_only_normalised_image_by_hand, ["3 hand-made pairs"], CLIP["clip_only_image_normalised"]),
    (clip_squared_norms, ["3 hand-made pairs", "x / ||x||"], CLIP["clip_squared_norm"]),
    (clip_matmul_without_transpose, ["3 hand-made pairs", "no exception", "RuntimeError"],
     CLIP["clip_text_not_transposed"]),
    (clip_detached_logits, ["gradients", "requires_grad=False"], CLIP["clip_no_graph"]),
    # in no catalogue: the message says what is expected and where to look, and names no mistake
    (clip_label_smoothing, ["3 hand-made pairs", "largest difference"], None),
    (clip_exp_temperature, ["3 hand-made pairs", "largest difference"], None),
    (clip_geometric_mean, ["6 random pairs", "largest difference"], None),
    (clip_euclidean, ["3 hand-made pairs", "largest difference"], None),
])
def test_clip_loss_rejects_mistakes(fn, fragments, names, capsys):
    assert_rejects(check_clip_loss, fn, *fragments, names=names, capsys=capsys)


# -- lm_pretraining_loss: correct variants ----------------------------------------------------------

def lm_cat_ids_then_embed(language_model, scene_ids, input_ids, labels):
    ids = torch.cat([scene_ids, input_ids], dim=1)  # (B, P + L)
    logits = language_model(language_model.token_embedding(ids))
    return masked_mean_nll(logits[:, scene_ids.shape[1]:], labels)


def lm_embed_then_cat_cross_entropy(language_model, scene_ids, input_ids, labels):
    embeddings = torch.cat([language_model.token_embedding(scene_ids), language_model.token_embedding(input_ids)], 1)
    logits = language_model(embeddings)[:, -input_ids.shape[1]:]  # (B, L, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def lm_weighted_mask(language_model, scene_ids, input_ids, labels):
    P = scene_ids.size(1)
    logits = language_model(language_model.token_embedding(torch.cat((scene_ids, input_ids), 1)))[:, P:]
    keep = labels != IGNORE_INDEX
    nll = -F.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, L)
    return (nll * keep).sum() / keep.sum()


# -- lm_pretraining_loss: typical mistakes ----------------------------------------------------------

def lm_no_slice_course_loss(language_model, scene_ids, input_ids, labels):
    ids = torch.cat([scene_ids, input_ids], dim=1)
    return masked_mean_nll(language_model(language_model.token_embedding(ids)), labels)


def lm_no_slice_cross_entropy(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def lm_hard_coded_64(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))
    return masked_mean_nll(logits[:, 64:], labels)


def lm_one_position_early(language_model, scene_ids, input_ids, labels):
    P = scene_ids.shape[1]
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))
    return masked_mean_nll(logits[:, P - 1 : -1], labels)


def lm_one_position_late(language_model, scene_ids, input_ids, labels):
    P = scene_ids.shape[1]
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))
    return masked_mean_nll(logits[:, P + 1 :], labels[:, :-1])


def lm_text_before_scene(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([input_ids, scene_ids], 1)))
    return masked_mean_nll(logits[:, : input_ids.shape[1]], labels)


def lm_without_scene(language_model, scene_ids, input_ids, labels):
    return masked_mean_nll(language_model(language_model.token_embedding(input_ids)), labels)


def lm_sum(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))[:, scene_ids.shape[1]:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")


def lm_mean_of_sequence_means(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))[:, scene_ids.shape[1]:]
    return torch.stack([masked_mean_nll(z, y) for z, y in zip(logits, labels)]).mean()


def lm_counts_ignored(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))[:, scene_ids.shape[1]:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")  # 0 where ignored
    return nll.mean()


def lm_ids_into_the_model(language_model, scene_ids, input_ids, labels):
    logits = language_model(torch.cat([scene_ids, input_ids], 1))
    return masked_mean_nll(logits[:, scene_ids.shape[1]:], labels)


def lm_labels_in_place(language_model, scene_ids, input_ids, labels):
    keep = labels != IGNORE_INDEX
    labels[~keep] = 0
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))[:, scene_ids.shape[1]:]
    nll = -F.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (nll * keep).sum() / keep.sum()


def lm_no_grad(language_model, scene_ids, input_ids, labels):
    with torch.no_grad():
        return lm_cat_ids_then_embed(language_model, scene_ids, input_ids, labels)


def lm_shift_labels_again(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))[:, scene_ids.shape[1]:]
    return masked_mean_nll(logits[:, :-1], labels[:, 1:])


def _text_logits(language_model, scene_ids, input_ids):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))
    return logits[:, scene_ids.shape[1]:]


def lm_sliced_at_text_length(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))
    return masked_mean_nll(logits[:, input_ids.shape[1]:], labels)


def lm_ignore_pad(language_model, scene_ids, input_ids, labels):
    logits = _text_logits(language_model, scene_ids, input_ids)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=0)


def lm_logits_as_log_probs(language_model, scene_ids, input_ids, labels):
    logits = _text_logits(language_model, scene_ids, input_ids)
    keep = labels != IGNORE_INDEX
    return -logits[keep].gather(-1, labels[keep].unsqueeze(-1)).mean()


def lm_hard_coded_64_cross_entropy(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, input_ids], 1)))[:, 64:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def lm_detached_logits(language_model, scene_ids, input_ids, labels):
    return masked_mean_nll(_text_logits(language_model, scene_ids, input_ids).detach(), labels)


# -- lm_pretraining_loss: mistakes that are in no catalogue (their message must name none) -----------

def lm_label_smoothing(language_model, scene_ids, input_ids, labels):
    logits = _text_logits(language_model, scene_ids, input_ids)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing=0.1)


def lm_scene_twice(language_model, scene_ids, input_ids, labels):
    logits = language_model(language_model.token_embedding(torch.cat([scene_ids, scene_ids, input_ids], 1)))
    return masked_mean_nll(logits[:, 2 * scene_ids.shape[1]:], labels)


def lm_probability_not_log(language_model, scene_ids, input_ids, labels):
    logits = _text_logits(language_model, scene_ids, input_ids)
    keep = labels != IGNORE_INDEX
    return (1 - F.softmax(logits[keep], -1).gather(-1, labels[keep].unsqueeze(-1))).mean()


def lm_scene_embedded_as_zeros(language_model, scene_ids, input_ids, labels):
    scene = torch.zeros(*scene_ids.shape, language_model.token_embedding.embedding_dim)
    logits = language_model(torch.cat([scene, language_model.token_embedding(input_ids)], 1))
    return masked_mean_nll(logits[:, scene_ids.shape[1]:], labels)


@pytest.mark.parametrize("fn", [lm_cat_ids_then_embed, lm_embed_then_cat_cross_entropy, lm_weighted_mask,
                                tutor_lib.pretrain.lm_pretraining_loss])
def test_lm_pretraining_loss_accepts_correct_variants(fn, capsys):
    assert_accepts(check_lm_pretraining_loss, fn, capsys, "lm_pretraining_loss")


@pytest.mark.parametrize("fn, fragments, names", [
    (lm_no_slice_course_loss, ["64 scene slots", "(8, 70, 20)", "P + L positions", "logits[:, P:]"], LM["lm_not_sliced"]),
    (lm_no_slice_cross_entropy, ["64 scene slots", "no exception", "P + L positions"], LM["lm_not_sliced_cross_entropy"]),
    (lm_hard_coded_64, ["9-slot scene", "9 in this case"], LM["lm_hard_coded_64"]),
    (lm_one_position_early, ["64 scene slots", "logits[:, P:]"], LM["lm_one_position_early"]),
    (lm_one_position_late, ["64 scene slots", "the prediction of label 0"], LM["lm_one_position_late"]),
    (lm_text_before_scene, ["64 scene slots", "causal"], (LM["lm_text_before_scene"], LM["lm_without_scene"])),
    (lm_without_scene, ["64 scene slots", "scene first"], (LM["lm_without_scene"], LM["lm_text_before_scene"])),
    (lm_sum, ["64 scene slots", "the sum over"], LM["lm_sum"]),
    (lm_mean_of_sequence_means, ["64 scene slots", "mean of per-sequence means"], LM["lm_mean_of_sequence_means"]),
    (lm_counts_ignored, ["64 scene slots", "labelled -100 counted"], LM["lm_ignored_counted"]),
    (lm_ids_into_the_model, ["reads embeddings", "integers, not embeddings", "language_model.token_embedding(ids)"],
     LM["lm_ids_into_the_model"]),
    (lm_labels_in_place, ["inputs are left unchanged", "labels modified in place", "labels[labels == -100] = 0"],
     LM["lm_labels_changed_in_place"]),
    (lm_no_grad, ["gradients", "requires_grad=False", "torch.no_grad()"], LM["lm_no_graph"]),
    (lm_shift_labels_again, ["64 scene slots", "already the token after"], LM["lm_labels_shifted_again"]),
    (lm_sliced_at_text_length, ["64 scene slots", "no exception", "number of scene slots"], LM["lm_sliced_at_L"]),
    (lm_ignore_pad, ["64 scene slots", "no exception", "ignore_index=-100"], LM["lm_ignore_index_pad"]),
    (lm_logits_as_log_probs, ["64 scene slots", "log_softmax"], LM["lm_raw_logits"]),
    (lm_hard_coded_64_cross_entropy, ["9-slot scene", "no exception"], LM["lm_hard_coded_64_cross_entropy"]),
    (lm_detached_logits, ["gradients", "requires_grad=False"], LM["lm_no_graph"]),
    # in no catalogue: the message says what is expected and where to look, and names no mistake
    (lm_label_smoothing, ["64 scene slots", "largest difference"], None),
    (lm_scene_twice, ["64 scene slots", "largest difference"], None),
    (lm_probability_not_log, ["64 scene slots", "largest difference"], None),
    (lm_scene_embedded_as_zeros, ["64 scene slots", "largest difference"], None),
])
def test_lm_pretraining_loss_rejects_mistakes(fn, fragments, names, capsys):
    assert_rejects(check_lm_pretraining_loss, fn, *fragments, names=names, capsys=capsys)


def test_a_mistake_that_fails_an_earlier_case_is_not_named():
    """The 9-slot case of a hard-coded 64 raises what 'logits not sliced' would raise on some inputs; only mistakes
    that pass the 64-slot case, as the student's did, may be named."""
    message = assert_rejects(check_lm_pretraining_loss, lm_hard_coded_64, names=LM["lm_hard_coded_64"])
    assert LM["lm_not_sliced"] not in message


def test_the_first_lm_case_mixes_captions_and_questions():
    """A mean of per-sequence means differs from the mean only if sequences carry different numbers of labels."""
    from tutor_lib.checks.nb04_stage0 import _corpus

    _, _, labels = _corpus(8, 64, seed=404)
    assert len(set((labels != IGNORE_INDEX).sum(1).tolist())) == 2


# -- guards -----------------------------------------------------------------------------------------

def clip_wraps_reference(image_emb, text_emb, temperature):
    return tutor_lib.pretrain.clip_loss(image_emb, text_emb, temperature)


def lm_wraps_reference(language_model, scene_ids, input_ids, labels):
    return tutor_lib.pretrain.lm_pretraining_loss(language_model, scene_ids, input_ids, labels)


@pytest.mark.parametrize("name, fn, fragment", [
    ("clip_loss", tutor_lib.pretrain.clip_loss, "tutor_lib's own"),
    ("clip_loss", clip_wraps_reference, "it calls 'clip_loss'"),
    ("lm_pretraining_loss", tutor_lib.pretrain.lm_pretraining_loss, "tutor_lib's own"),
    ("lm_pretraining_loss", lm_wraps_reference, "it calls 'lm_pretraining_loss'"),
])
def test_hidden_guard_rejects_the_reference(name, fn, fragment):
    with pytest.raises(CheckError, match=fragment):
        checks.not_reference(name, fn, [getattr(tutor_lib.pretrain, name)])


def test_hidden_guard_accepts_own_code_that_uses_the_course_loss():
    checks.not_reference("lm_pretraining_loss", lm_cat_ids_then_embed, [tutor_lib.pretrain.lm_pretraining_loss])
    checks.not_reference("clip_loss", clip_normalize_cross_entropy, [tutor_lib.pretrain.clip_loss])


def test_rebinding_cross_entropy_does_not_fool_the_checks(monkeypatch):
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: torch.tensor(0.0))
    with pytest.raises(CheckError, match="was replaced"):
        checks.verify_integrity()
    with pytest.raises(CheckError, match="0-dimensional|hand-made"):
        check_clip_loss(clip_sum_over_pairs)


@pytest.mark.parametrize("check, fn", [(check_clip_loss, clip_labels_zeros), (check_lm_pretraining_loss, lm_sum)])
def test_checks_are_deterministic_fast_and_leave_the_global_rng_alone(check, fn):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    messages = []
    for _ in range(2):
        with pytest.raises(CheckError) as info:
            check(fn)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert torch.equal(torch.get_rng_state(), state)
    start = time.perf_counter()
    (check_clip_loss if check is check_clip_loss else check_lm_pretraining_loss)(
        clip_normalize_cross_entropy if check is check_clip_loss else lm_cat_ids_then_embed)
    assert time.perf_counter() - start < 2.0


# -- the solution notebook's hidden tests -----------------------------------------------------------

NOTEBOOK = Path(__file__).resolve().parent.parent / "solutions" / "04_stage0" / "04_stage0.ipynb"


def _cell(cell_id: str) -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c.get("id") == cell_id)["source"])


def _notebook_namespace() -> dict:
    """The notebook's imports and solutions, executed as the notebook would."""
    namespace: dict = {}
    exec("import torch\nimport tutor_lib\nimport tutor_lib.checks\ndevice = torch.device('cpu')", namespace)
    for cell_id in ("imports", "lm_pretraining_loss", "clip_loss"):
        exec(_cell(cell_id), namespace)
    return namespace


@pytest.mark.parametrize("cell_id", ["test_lm_pretraining_loss", "test_clip_loss"])
def test_test_cells_pass_on_the_solution(cell_id, capsys):
    source = _cell(cell_id)
    assert source.startswith(f"tutor_lib.checks.check_{cell_id[5:]}({cell_id[5:]})\n### BEGIN HIDDEN TESTS")
    assert "verify_integrity()" in source and "not_reference(" in source
    exec(source, _notebook_namespace())
    out = capsys.readouterr()
    assert "✓" in out.out and out.err == ""


@pytest.mark.parametrize("cell_id, name, wrapper", [
    ("test_lm_pretraining_loss", "lm_pretraining_loss", None),
    ("test_clip_loss", "clip_loss", None),
    ("test_lm_pretraining_loss", "lm_pretraining_loss",
     "def lm_pretraining_loss(language_model, scene_ids, input_ids, labels):\n"
     "    return tutor_lib.pretrain.lm_pretraining_loss(language_model, scene_ids, input_ids, labels)\n"),
    ("test_clip_loss", "clip_loss",
     "from tutor_lib.pretrain import clip_loss as _clip\n"
     "def clip_loss(image_emb, text_emb, temperature):\n    return _clip(image_emb, text_emb, temperature)\n"),
])
def test_hidden_tests_reject_the_reference_and_wrappers(cell_id, name, wrapper):
    namespace = _notebook_namespace()
    if wrapper is None:
        namespace[name] = getattr(tutor_lib.pretrain, name)
    else:
        exec(wrapper, namespace)
    with pytest.raises(CheckError, match="is your own implementation"):
        exec(_cell(cell_id), namespace)


@pytest.mark.parametrize("cell_id, name, wrong", [
    # .squeeze() is harmless for every visible case (B >= 3) and breaks on the hidden batch of one.
    ("test_clip_loss", "clip_loss", "def clip_loss(image_emb, text_emb, temperature):\n"
     "    logits = (F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T).squeeze() / temperature\n"
     "    labels = torch.arange(len(logits))\n"
     "    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2\n"),
    ("test_lm_pretraining_loss", "lm_pretraining_loss", "def lm_pretraining_loss(language_model, scene_ids, input_ids, labels):\n"
     "    ids = torch.cat([scene_ids, input_ids], dim=1)\n"
     "    logits = language_model(language_model.token_embedding(ids)).squeeze()\n"
     "    return masked_mean_nll(logits[:, scene_ids.shape[1]:], labels)\n"),
])
def test_hidden_tests_catch_what_the_visible_check_does_not(cell_id, name, wrong, capsys):
    namespace = _notebook_namespace()
    exec(wrong, namespace)
    namespace["tutor_lib"].checks.__dict__[f"check_{name}"](namespace[name])  # the visible check passes
    assert "✓" in capsys.readouterr().out
    source = _cell(cell_id).replace(f"tutor_lib.checks.check_{name}({name})\n", "")
    with pytest.raises(CheckError, match="hidden"):
        exec(source, namespace)
