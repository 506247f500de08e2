"""The checks of 01_loss reject the mistakes students make and accept every correct variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from check_assertions import assert_accepts, assert_rejects

import tutor_lib.checks as checks
import tutor_lib.losses
from tutor_lib.checks import CheckError, check_masked_mean_nll, check_token_nll


def _rows(n: int) -> torch.Tensor:
    return torch.arange(n)


# -- token_nll: correct variants --------------------------------------------------------------------

def nll_log_softmax(logits, targets):
    return -F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)


def nll_logsumexp(logits, targets):
    return torch.logsumexp(logits, dim=1) - logits[_rows(len(targets)), targets]


def nll_loop(logits, targets):
    losses = []
    for row, target in zip(logits, targets):
        shifted = row - row.max()
        losses.append(torch.log(torch.exp(shifted).sum()) - shifted[target])
    return torch.stack(losses)


def nll_float64(logits, targets):
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return -log_probs[torch.arange(len(targets)), targets]


# -- token_nll: typical mistakes -------------------------------------------------------------------

def nll_softmax_then_log(logits, targets):
    return -torch.log(F.softmax(logits, dim=-1))[_rows(len(targets)), targets]


def nll_exp_over_sum(logits, targets):
    probs = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    return -torch.log(probs[_rows(len(targets)), targets])


def nll_missing_minus(logits, targets):
    return F.log_softmax(logits, dim=-1)[_rows(len(targets)), targets]


def nll_mean(logits, targets):
    return -F.log_softmax(logits, dim=-1)[_rows(len(targets)), targets].mean()


def nll_wrong_dim(logits, targets):
    return -F.log_softmax(logits, dim=0)[_rows(len(targets)), targets]


def nll_probability(logits, targets):
    return F.softmax(logits, dim=-1)[_rows(len(targets)), targets]


def nll_numpy(logits, targets):
    z = logits.detach().numpy().astype(np.float64)
    z = z - z.max(1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(1, keepdims=True))
    return torch.from_numpy(-log_probs[np.arange(len(z)), targets.numpy()])


def nll_in_place(logits, targets):
    logits -= logits.max(dim=-1, keepdim=True).values
    return torch.log(torch.exp(logits).sum(-1)) - logits[_rows(len(targets)), targets]


def nll_cross_entropy(logits, targets):
    return F.cross_entropy(logits, targets, reduction="none")


def nll_nll_loss_module(logits, targets):
    return torch.nn.NLLLoss(reduction="none")(torch.log_softmax(logits, -1), targets)


def nll_all_columns(logits, targets):
    return -F.log_softmax(logits, dim=-1)[:, targets]


def nll_one_minus_p(logits, targets):  # issue 17's example
    return 1 - torch.softmax(logits, dim=-1)[_rows(len(targets)), targets]


def nll_sum(logits, targets):
    return -F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum()


def nll_max_not_added_back(logits, targets):
    m = logits.max(dim=1, keepdim=True).values
    return torch.log(torch.exp(logits - m).sum(dim=1)) - logits[_rows(len(targets)), targets]


def nll_raw_logit(logits, targets):
    return -logits.gather(1, targets[:, None]).squeeze(1)


def nll_detached_logsumexp(logits, targets):
    return torch.logsumexp(logits, 1).detach() - logits[_rows(len(targets)), targets]


# -- token_nll: mistakes in no catalogue (the message must name none) ---------------------------

def nll_log2(logits, targets):
    return -F.log_softmax(logits, dim=-1)[_rows(len(targets)), targets] / np.log(2)


def nll_epsilon(logits, targets):
    return -torch.log(F.softmax(logits, dim=-1) + 1e-9)[_rows(len(targets)), targets]


def nll_target_off_by_one(logits, targets):
    return -F.log_softmax(logits, dim=-1)[_rows(len(targets)), (targets + 1) % logits.shape[1]]


def nll_squared(logits, targets):
    return (torch.logsumexp(logits, 1) - logits[_rows(len(targets)), targets]) ** 2


@pytest.mark.parametrize("fn", [nll_log_softmax, nll_logsumexp, nll_loop, nll_float64, tutor_lib.losses.token_nll])
def test_token_nll_accepts_correct_variants(fn, capsys):
    assert_accepts(check_token_nll, fn, capsys, "token_nll")


SOFTMAX_LOG = "softmax then log: -log(0) = inf once a probability underflows"
EXP_SUM = "exp / sum without subtracting the maximum: exp(1000) = inf"


@pytest.mark.parametrize("fn, names, fragments", [
    (nll_softmax_then_log, SOFTMAX_LOG, ["magnitude 1000", "contains inf or nan", "compute log p directly"]),
    (nll_exp_over_sum, EXP_SUM, ["magnitude 1000", "contains inf or nan", "logsumexp"]),
    (nll_missing_minus, "log p instead of -log p (the minus sign is missing)", ["worked example", "negate"]),
    (nll_mean, "the mean over the rows instead of one loss per row",
     ["worked example", "one loss per row", "masked_mean_nll's job"]),
    (nll_wrong_dim, "normalised over the rows (dim=0) instead of the vocabulary (dim=-1)", ["worked example", "dim=-1"]),
    (nll_probability, "p(target) instead of -log p(target)", ["worked example", "the loss is -log p"]),
    (nll_numpy, None, ["gradient", "requires_grad=False", "numpy"]),
    (nll_in_place, "logits -= max: the caller's logits are changed in place",
     ["inputs are left unchanged", "logits were modified in place"]),
    (nll_cross_entropy, None, ["computes the loss itself", "F.cross_entropy"]),
    (nll_nll_loss_module, None, ["computes the loss itself", "F.nll_loss"]),
    (nll_all_columns, "logits[:, targets]: an (N, N) table instead of one entry per row",
     ["worked example", "shape (3,)", "shape (3, 3)"]),
    (nll_one_minus_p, "1 - p(target) instead of -log p(target)", ["worked example", "1 - p is not the loss"]),
    (nll_sum, "the sum over the rows instead of one loss per row", ["worked example", "shape (3,)"]),
    (nll_max_not_added_back, "the row maximum subtracted but not added back", ["worked example", "add the maximum back"]),
    (nll_raw_logit, "-row[target], the raw logit, without the log-normaliser", ["worked example", "logsumexp"]),
    (nll_detached_logsumexp, "logsumexp detached from the graph", ["gradient", "no .detach()"]),
    (nll_log2, None, ["worked example", "logsumexp(row) - row[target]"]),
    (nll_epsilon, None, ["magnitude 1000", "logsumexp(row) - row[target]"]),
    (nll_target_off_by_one, None, ["worked example"]),
    (nll_squared, None, ["worked example"]),
])
def test_token_nll_rejects_mistakes(fn, names, fragments, capsys):
    assert_rejects(check_token_nll, fn, *fragments, names=names, parts=("case:", "expected:", "received:"), capsys=capsys)


def test_expected_value_is_shown_in_the_students_dtype():
    """The reference is computed in float64; next to a float32 result it must not read as a dtype requirement."""
    with pytest.raises(CheckError) as info:
        check_token_nll(nll_missing_minus)
    expected_line, received_line = (line for line in str(info.value).splitlines()
                                    if line.strip().startswith(("expected:", "received:")))
    assert "dtype torch.float32" in expected_line and "float64" not in expected_line, expected_line
    assert "dtype torch.float32" in received_line
    assert "0.3595" in expected_line and "-0.3595" in received_line


# -- masked_mean_nll: correct variants --------------------------------------------------------------

def masked_filter(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != ignore_index
    return nll_logsumexp(logits[keep], targets[keep]).mean()


def masked_weighted(logits, targets, ignore_index=-100):
    logits, targets = logits.flatten(0, -2), targets.flatten()
    keep = (targets != ignore_index).float()
    safe = torch.where(targets == ignore_index, torch.zeros_like(targets), targets)
    return (nll_log_softmax(logits, safe) * keep).sum() / keep.sum()


def masked_loop(logits, targets, ignore_index=-100):
    total, count = 0.0, 0
    for row, target in zip(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).tolist()):
        if target != ignore_index:
            total = total + (torch.logsumexp(row, 0) - row[target])
            count += 1
    return total / count


# -- masked_mean_nll: typical mistakes -------------------------------------------------------------

def masked_mean_over_all(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != ignore_index
    return (nll_log_softmax(logits, targets.clamp(min=0)) * keep).mean()


def masked_dummy_target(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    return nll_log_softmax(logits, torch.where(targets == ignore_index, 0, targets)).mean()


def masked_hard_coded(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != -100
    return nll_log_softmax(logits[keep], targets[keep]).mean()


def masked_sum(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != ignore_index
    return nll_log_softmax(logits[keep], targets[keep]).sum()


def masked_mean_of_means(logits, targets, ignore_index=-100):
    if logits.dim() == 2:
        logits, targets = logits[None], targets[None]
    means = [masked_filter(z, t, ignore_index) for z, t in zip(logits, targets) if (t != ignore_index).any()]
    return torch.stack(means).mean()


def masked_keepdim(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    return nll_log_softmax(logits[keep], targets[keep]).mean(0, keepdim=True)


def masked_2d_only(logits, targets, ignore_index=-100):
    keep = (targets != ignore_index).float()
    nll = nll_log_softmax(logits, targets.clamp(min=0))  # no reshape: breaks on (B, L, V)
    return (nll * keep).sum() / keep.sum()


def masked_in_place(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    targets[~keep] = 0
    nll = nll_log_softmax(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return (nll * keep.reshape(-1)).sum() / keep.sum()


def masked_gather_ignored(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    nll = nll_log_softmax(logits, targets)  # gathers at index -100
    keep = targets != ignore_index
    return (nll * keep).sum() / keep.sum()


def masked_cross_entropy(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)


def masked_unstable(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != ignore_index
    return nll_softmax_then_log(logits[keep], targets[keep]).mean()


def masked_exp_over_sum(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != ignore_index
    return nll_exp_over_sum(logits[keep], targets[keep]).mean()


def masked_no_mean(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != ignore_index
    return nll_log_softmax(logits[keep], targets[keep])


# -- masked_mean_nll: mistakes in no catalogue (the message must name none) ---------------------

def masked_count_plus_one(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != ignore_index
    return nll_log_softmax(logits[keep], targets[keep]).sum() / (keep.sum() + 1)


def masked_also_ignores_pad(logits, targets, ignore_index=-100):
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = (targets != ignore_index) & (targets != 0)  # PAD dropped too, even when it is a real target
    return nll_log_softmax(logits[keep], targets[keep]).mean()


def masked_first_sequence_only(logits, targets, ignore_index=-100):
    if logits.dim() == 3:
        logits, targets = logits[0], targets[0]
    return masked_filter(logits, targets, ignore_index)


@pytest.mark.parametrize("fn", [masked_filter, masked_weighted, masked_loop, tutor_lib.losses.masked_mean_nll])
def test_masked_mean_nll_accepts_correct_variants(fn, capsys):
    assert_accepts(check_masked_mean_nll, fn, capsys, "masked_mean_nll")


@pytest.mark.parametrize("fn, names, fragments", [
    (masked_mean_over_all, "divided by all positions, the ignored ones included",
     ["default ignore_index", "divide by the number of kept positions"]),
    (masked_dummy_target, "ignored positions scored as predicting token 0", ["default ignore_index", "dummy target"]),
    (masked_hard_coded, "-100 hard-coded instead of ignore_index", ["ignore_index=0", "not a hard-coded -100"]),
    (masked_sum, "the sum over the kept positions, not the mean", ["default ignore_index", "that is the sum"]),
    (masked_mean_of_means, "a mean of per-sequence means", ["default ignore_index", "not sequence by sequence"]),
    (masked_keepdim, "shape (1,) instead of a scalar", ["0-dimensional tensor"]),
    (masked_2d_only, None, ["batch (2, 5, 20)", "no exception"]),
    (masked_in_place, "targets[targets == ignore_index] = 0 changes the caller's labels",
     ["inputs are left unchanged", "targets[targets == -100] = 0"]),
    (masked_gather_ignored, None, ["default ignore_index", "no exception", "RuntimeError"]),
    (masked_cross_entropy, None, ["computes the loss itself", "F.cross_entropy"]),
    (masked_unstable, "softmax then log: -log(0) = inf once a probability underflows", ["magnitude 1000", "inf or nan"]),
    (masked_exp_over_sum, "exp / sum without subtracting the maximum: exp(1000) = inf", ["magnitude 1000", "inf or nan"]),
    (masked_no_mean, "the loss of each kept position, not their mean", ["0-dimensional tensor", "shape (4,)"]),
    (masked_count_plus_one, None, ["default ignore_index", "not ignore_index"]),
    (masked_also_ignores_pad, None, ["nothing ignored"]),
    (masked_first_sequence_only, None, ["default ignore_index"]),
])
def test_masked_mean_nll_rejects_mistakes(fn, names, fragments, capsys):
    assert_rejects(check_masked_mean_nll, fn, *fragments, names=names, parts=("hint:",), capsys=capsys)


# -- guards -----------------------------------------------------------------------------------------

def nll_wraps_reference(logits, targets):
    return tutor_lib.losses.token_nll(logits, targets)


def masked_wraps_reference(logits, targets, ignore_index=-100):
    return tutor_lib.losses.masked_mean_nll(logits, targets, ignore_index)


@pytest.mark.parametrize("name, fn, fragment", [
    ("token_nll", tutor_lib.losses.token_nll, "tutor_lib's own"),
    ("token_nll", nll_wraps_reference, "it calls 'token_nll'"),
    ("masked_mean_nll", tutor_lib.losses.masked_mean_nll, "tutor_lib's own"),
    ("masked_mean_nll", masked_wraps_reference, "it calls 'masked_mean_nll'"),
])
def test_hidden_guard_rejects_the_reference(name, fn, fragment):
    reference = getattr(tutor_lib.losses, name)
    with pytest.raises(CheckError, match=fragment):
        checks.not_reference(name, fn, [reference])


def test_hidden_guard_accepts_own_code():
    checks.not_reference("token_nll", nll_logsumexp, [tutor_lib.losses.token_nll])
    checks.not_reference("masked_mean_nll", masked_filter, [tutor_lib.losses.masked_mean_nll, tutor_lib.losses.token_nll])


def test_rebinding_cross_entropy_is_noticed_and_does_not_fool_the_check(monkeypatch):
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: torch.tensor(0.0))
    with pytest.raises(CheckError, match="was replaced"):
        checks.verify_integrity()
    with pytest.raises(CheckError, match="default ignore_index"):  # expected values come from the bound original
        check_masked_mean_nll(masked_sum)


def test_checks_are_deterministic_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    messages = []
    for _ in range(2):
        with pytest.raises(CheckError) as info:
            check_token_nll(nll_wrong_dim)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert torch.equal(torch.get_rng_state(), state)
