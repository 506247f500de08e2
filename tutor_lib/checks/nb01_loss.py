"""Checks for notebook 01_loss: token_nll and masked_mean_nll.

Both are compared with PyTorch's own cross-entropy (bound when this module is imported, so a
notebook cannot rebind it), on the notebook's worked example, on random logits, on logits of
magnitude 1000 (where softmax-then-log overflows), and on their gradients. Calling
F.cross_entropy or F.nll_loss is refused: computing them is the exercise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import trusted
from ._common import (
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
    reference_use,
    register,
    short,
)

__all__ = ["check_token_nll", "check_masked_mean_nll"]

_FORBIDDEN = {"cross_entropy": F.cross_entropy, "nll_loss": F.nll_loss}

# The worked example of the notebook (the seed's logits): p = 0.698, 0.673, 0.783.
EXAMPLE_LOGITS = torch.tensor([
    [2.0, 3.5, 0.5, 0.3, 0.2, 1.0],
    [0.5, 0.3, 2.8, 0.8, 0.5, 0.1],
    [0.1, 0.2, 0.5, 3.2, 0.3, 0.4],
])
EXAMPLE_TARGETS = torch.tensor([1, 2, 3])


def _nll(logits: torch.Tensor, targets: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Trusted per-row -log p(target), in float64."""
    log_probs = log_softmax(logits.double(), dim=dim)
    return -trusted.gather(log_probs, -1, targets.unsqueeze(-1)).squeeze(-1)


@contextlib.contextmanager
def _refuse_builtin_losses(name: str):
    """While student code runs, F.cross_entropy / F.nll_loss fail with a message saying why."""

    def refuse(label):
        def refused(*args, **kwargs):
            fail(f"{name} computes the loss itself", "-log p built from log_softmax or logsumexp",
                 f"a call to F.{label}",
                 f"F.{label} is what this exercise rebuilds; use the log-softmax of each row and pick the target's entry")
        return refused

    try:
        for label in _FORBIDDEN:
            setattr(F, label, refuse(label))
        yield
    finally:
        for label, original in _FORBIDDEN.items():
            setattr(F, label, original)


def _no_builtin_loss(name: str, fn) -> None:
    if (getattr(fn, "__module__", "") or "").startswith("tutor_lib"):
        return  # the reference itself; the hidden tests refuse it as a submission
    how = reference_use(fn, _FORBIDDEN.values())
    if how:
        fail(f"{name} computes the loss itself", "-log p built from log_softmax or logsumexp",
             how.replace("the reference", "PyTorch's"),
             "cross_entropy / nll_loss are what this exercise rebuilds; compute -log p from the log-softmax yourself")


def _first_match(received: torch.Tensor, candidates: dict[str, torch.Tensor], default: str) -> str:
    """The hint of the first known mistake whose output equals `received`, else `default`."""
    if not isinstance(received, torch.Tensor):
        return default
    received = received.detach().double().cpu()
    for hint, value in candidates.items():
        if received.shape == value.shape and bool(isfinite(received).all()) and allclose(received, value, atol=1e-4):
            return hint
    return default


# -- token_nll ------------------------------------------------------------------------------------

_TOKEN_HINT = "-log p(target) = logsumexp(row) - row[target]; pick one entry per row, e.g. with gather or arange indexing"


def _token_case(fn, case: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    expected = _nll(logits, targets)
    with _refuse_builtin_losses("token_nll"):
        received = call(case, fn, logits.clone(), targets.clone(), hint=_TOKEN_HINT)
    if isinstance(received, torch.Tensor) and received.dim() == 0:
        fail(case, f"shape {tuple(expected.shape)}: one loss per row", f"a single number {short(received)}",
             "token_nll returns -log p for every row; averaging them is masked_mean_nll's job")
    expect_tensor(case, received, tuple(expected.shape))
    if not received.is_floating_point():
        fail(case, "a floating-point tensor", f"dtype {received.dtype}", "losses are real numbers")
    hint = _first_match(received, {
        "you returned log p; the loss is its negative, -log p (always >= 0)": -expected,
        "normalise over the vocabulary, the last dimension (dim=-1), not over the rows": _nll(logits, targets, dim=0),
        "the target's probability p is not the loss; the loss is -log p": (-expected).exp(),
    }, _TOKEN_HINT)
    if not bool(isfinite(received.detach()).all()):
        hint = ("exp(1000) is inf in float32, so softmax-then-log (or exp / sum) breaks on large logits: "
                "subtract the row maximum first, i.e. use logsumexp or F.log_softmax")
    expect_close(case, received, expected, atol=1e-4, rtol=1e-5, hint=hint)
    return received


def _expect_inputs_unchanged(fn: Callable, logits: torch.Tensor, targets: torch.Tensor, hint: str) -> None:
    """Fail if fn modifies its logits or targets in place."""
    case = "the inputs are left unchanged"
    before_logits, before_targets = logits.clone(), targets.clone()
    call(case, fn, logits, targets)
    if not (equal(logits, before_logits) and equal(targets, before_targets)):
        fail(case, "logits and targets as they were passed in", "they were modified in place", hint)


def _differentiable_output(name: str, fn: Callable, case: str, x: torch.Tensor, targets: torch.Tensor,
                           hint: str) -> torch.Tensor:
    """fn(x, targets) with the built-in losses refused; fail unless autograd can differentiate it."""
    with _refuse_builtin_losses(name):
        out = call(case, fn, x, targets.clone())
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        fail(case, "a result that autograd can differentiate", "a tensor with requires_grad=False", hint)
    return out


@register
def check_token_nll(token_nll) -> None:
    """Check token_nll(logits (N, V), targets (N,)) -> (N,) of -log p(target)."""
    _no_builtin_loss("token_nll", token_nll)
    _token_case(token_nll, "the worked example: 3 tokens, vocabulary of 6", EXAMPLE_LOGITS, EXAMPLE_TARGETS)
    _token_case(token_nll, "one row (N = 1), two-word vocabulary", torch.tensor([[0.0, 2.0]]), torch.tensor([0]))

    g = torch.Generator().manual_seed(101)
    logits = 3 * torch.randn(7, 20, generator=g)
    targets = torch.randint(20, (7,), generator=g)
    _token_case(token_nll, "random logits (7, 20)", logits, targets)

    large = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 500.0], [-1000.0, -1000.0, 1000.0], [1000.0, 999.0, 0.0]])
    _token_case(token_nll, "logits of magnitude 1000 (targets 1, 2, 0, 1: -log p = 1000, 500, 2000, 1.31)",
                large, torch.tensor([1, 2, 0, 1]))

    _expect_inputs_unchanged(token_nll, logits, targets,
                             "avoid in-place operations such as logits -= max or targets[...] = ...; build new tensors")

    # Gradients: d(sum of losses)/d logits = softmax - one_hot(target); .item(), numpy or detach break this.
    case = "gradient of the summed loss with respect to the logits"
    x = logits.clone().requires_grad_(True)
    out = _differentiable_output("token_nll", token_nll, case, x, targets,
                                 "use torch operations only: no .item(), .tolist(), numpy or .detach() inside token_nll")
    call(case, lambda: out.sum().backward())
    expected_grad = trusted.softmax(logits.double(), dim=-1) - trusted.one_hot(targets, 20).double()
    if x.grad is None:
        fail(case, "a gradient on the logits", "None", "keep the logits in the computation graph")
    expect_close(case, x.grad, expected_grad, atol=1e-5, hint="the gradient should be softmax(logits) - one_hot(target)")

    passed("token_nll", "per-token -log p right on the worked example (0.360, 0.396, 0.245), random logits, "
           "logits of ±1000 and gradients")


# -- masked_mean_nll ------------------------------------------------------------------------------

_MASKED_HINT = ("flatten logits to (N, V) and targets to (N,), then average -log p over the positions whose "
                "target is not ignore_index (and only those)")


def _wrong_means(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> dict[str, torch.Tensor]:
    """What the typical mistakes return, so the failure can say which one it looks like."""
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = flat_targets != ignore_index
    nll = _nll(flat_logits, torch.where(keep, flat_targets, torch.zeros_like(flat_targets)))
    kept = nll * keep
    wrong = {}
    if ignore_index != -100:
        keep100 = flat_targets != -100
        wrong[f"use the ignore_index argument (here {ignore_index}), not a hard-coded -100"] = (
            _nll(flat_logits, torch.where(keep100, flat_targets, torch.zeros_like(flat_targets)))[keep100].mean())
    wrong |= {
        "the ignored positions are in your mean: divide by the number of kept positions, not by all positions":
            kept.sum() / flat_targets.numel(),
        "the ignored positions count as predicting token 0: drop them instead": nll.mean(),
        "that is the sum; the loss is the mean over the kept positions": kept.sum(),
    }
    if targets.dim() == 2:
        rows = keep.view(targets.shape)
        per_row = (kept.view(targets.shape).sum(1) / rows.sum(1).clamp(min=1))[rows.any(1)]
        wrong["that is a mean of per-sequence means; average over all kept tokens of the batch at once"] = per_row.mean()
    return wrong


def _masked_case(fn, case: str, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = None):
    index = -100 if ignore_index is None else ignore_index
    expected = cross_entropy(logits.double().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=index)
    args = (logits.clone(), targets.clone()) + (() if ignore_index is None else (ignore_index,))
    with _refuse_builtin_losses("masked_mean_nll"):
        received = call(case, fn, *args, hint=_MASKED_HINT)
    expect_tensor(case, received)
    if received.dim() != 0:
        fail(case, "a 0-dimensional tensor (one number for the whole batch)", short(received),
             "average over every kept position of every sequence; return a scalar tensor, e.g. total / count")
    hint = _first_match(received, _wrong_means(logits, targets, index), _MASKED_HINT)
    if not bool(isfinite(received.detach())):
        hint = "the result is inf or nan: is token_nll stable on large logits, and are ignored targets kept out of the indexing?"
    expect_close(case, received, expected, atol=1e-4, rtol=1e-5, hint=hint)


@register
def check_masked_mean_nll(masked_mean_nll) -> None:
    """Check masked_mean_nll(logits (..., V), targets (...), ignore_index=-100) -> scalar mean."""
    _no_builtin_loss("masked_mean_nll", masked_mean_nll)
    g = torch.Generator().manual_seed(202)

    # Two sequences with 1 and 3 supervised positions: a mean of means and a mean over all differ.
    logits = 2 * torch.randn(2, 5, 20, generator=g)
    targets = torch.tensor([[-100, -100, -100, 10, -100], [-100, 4, 9, 12, -100]])
    _masked_case(masked_mean_nll, "batch (2, 5, 20) with labels -100, default ignore_index", logits, targets)

    flat_logits = 2 * torch.randn(6, 20, generator=g)
    flat_targets = torch.tensor([3, -100, 7, -100, -100, 19])
    _masked_case(masked_mean_nll, "flat logits (6, 20), ignore_index=-100 passed explicitly", flat_logits, flat_targets, -100)

    pad_targets = torch.tensor([[1, 5, 9, 0, 0], [1, 6, 7, 8, 0]])  # ignore the padding (PAD = 0) instead
    _masked_case(masked_mean_nll, "batch (2, 5, 20) with ignore_index=0 and no -100 anywhere", logits, pad_targets, 0)

    _masked_case(masked_mean_nll, "nothing ignored: the plain mean of all positions",
                 flat_logits, torch.tensor([3, 0, 7, 2, 11, 19]))

    large = torch.tensor([[[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0], [5.0, 0.0, 0.0]]])
    _masked_case(masked_mean_nll, "logits of magnitude 1000, third position ignored", large, torch.tensor([[1, 0, -100]]))

    _expect_inputs_unchanged(masked_mean_nll, logits, targets, "targets[targets == -100] = 0 changes the caller's "
                             "labels; use torch.where or a boolean mask instead")

    case = "gradient: ignored positions get exactly zero gradient"
    x = logits.clone().requires_grad_(True)
    out = _differentiable_output("masked_mean_nll", masked_mean_nll, case, x, targets,
                                 "use torch operations only: no .item(), numpy or .detach() inside the loss")
    call(case, lambda: out.backward())
    reference = logits.double().clone().requires_grad_(True)
    cross_entropy(reference.reshape(-1, 20), targets.reshape(-1)).backward()
    if x.grad is None:
        fail(case, "a gradient on the logits", "None", "keep the logits in the computation graph")
    ignored = targets == -100
    if bool((x.grad[ignored] != 0).any()):
        fail(case, "zero gradient at every position labelled -100", "non-zero gradient at ignored positions",
             "ignored positions must not influence the loss at all; mask them out before averaging")
    expect_close(case, x.grad, reference.grad, atol=1e-5, hint="the gradient should equal F.cross_entropy's")

    passed("masked_mean_nll", "equals F.cross_entropy(..., ignore_index) on batches and flat inputs, "
           "with -100 and with a custom ignore_index, on logits of ±1000 and in its gradients")
