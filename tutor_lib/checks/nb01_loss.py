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
    fail,
    isfinite,
    log_softmax,
    passed,
    reference_use,
    register,
    short,
)
from ._mistakes import Mistake, catalogue, matching

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


def _same(received: object, theirs: object, atol: float = 1e-4, rtol: float = 1e-5) -> bool:
    """Equal within the case's tolerance: tensors of one shape (inf and nan where the other has them), or tuples of them."""
    if isinstance(received, tuple) and isinstance(theirs, tuple):
        return len(received) == len(theirs) and all(_same(a, b, atol, rtol) for a, b in zip(received, theirs))
    if not (isinstance(received, torch.Tensor) and isinstance(theirs, torch.Tensor)):
        return False
    if received.shape != theirs.shape or received.is_floating_point() != theirs.is_floating_point():
        return False
    a, b = received.detach().double().cpu(), theirs.detach().double().cpu()
    return bool(allclose(a, b, atol=atol, rtol=rtol, equal_nan=True))


def _expect_loss(case: str, received: object, expected: torch.Tensor, matches: Callable[[], list], hint: str,
                 scalar_hint: str = "") -> None:
    """Fail unless received is a floating tensor of expected's shape within tolerance; matches() names the mistakes."""
    shape = tuple(expected.shape)
    ok = (isinstance(received, torch.Tensor) and tuple(received.shape) == shape and received.is_floating_point()
          and allclose(received.detach().double().cpu(), expected, atol=1e-4, rtol=1e-5))
    if ok:
        return
    found = matches()
    if not isinstance(received, torch.Tensor):
        fail(case, "a torch.Tensor", f"{type(received).__name__}: {short(received)}", hint, found)
    if tuple(received.shape) != shape:
        wanted = f"shape {shape}: one loss per row" if shape else "a 0-dimensional tensor (one number for the whole batch)"
        fail(case, wanted, f"shape {tuple(received.shape)}: {short(received)}", scalar_hint or hint, found)
    if not received.is_floating_point():
        fail(case, "a floating-point tensor", f"dtype {received.dtype}", "losses are real numbers", found)
    got = received.detach().double().cpu()
    shown = expected.to(received.dtype)  # the reference is float64; show it in the student's dtype
    if not bool(isfinite(got).all()):
        fail(case, short(shown), f"{short(received)} (contains inf or nan)",
             "the loss must stay finite on every case, logits of ±1000 included (exp overflows float32 above 88); "
             + hint, found)
    worst = (got - expected).abs().max().item()
    fail(case, short(shown), f"{short(received)} (largest difference {worst:.3g}, tolerance 0.0001)", hint, found)


def _matches(mistakes, passed_cases: list, args: tuple, received: object) -> Callable[[], list]:
    """The catalogue's matches for a failing case, computed only when it fails.

    A mistake matches when its output equals the student's on this case and on every case the student
    already passed (passed_cases: (args, output) pairs): a mistake those cases would have caught is not theirs.
    """
    def outcome(f: Callable) -> tuple:
        return tuple(f(*_clones(case_args)) for case_args, _ in passed_cases) + (f(*_clones(args)),)

    return lambda: matching(mistakes, outcome, tuple(out for _, out in passed_cases) + (received,), _same)


def _clones(args: tuple) -> tuple:
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


# -- token_nll ------------------------------------------------------------------------------------

def _log_p(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return log_softmax(logits, dim=-1)[trusted.arange(len(targets)), targets]


def nll_log_p(logits, targets):
    """token_nll returning log p(target), without the minus sign."""
    return _log_p(logits, targets)


def nll_mean(logits, targets):
    """token_nll returning the mean over the rows instead of one loss per row."""
    return -_log_p(logits, targets).mean()


def nll_sum(logits, targets):
    """token_nll returning the sum over the rows instead of one loss per row."""
    return -_log_p(logits, targets).sum()


def nll_dim0(logits, targets):
    """token_nll normalising over the rows (dim=0) instead of the vocabulary."""
    return -log_softmax(logits, dim=0)[trusted.arange(len(targets)), targets]


def nll_probability(logits, targets):
    """token_nll returning p(target) itself."""
    return trusted.softmax(logits, dim=-1)[trusted.arange(len(targets)), targets]


def nll_one_minus_p(logits, targets):
    """token_nll returning 1 - p(target)."""
    return 1 - trusted.softmax(logits, dim=-1)[trusted.arange(len(targets)), targets]


def nll_softmax_then_log(logits, targets):
    """token_nll as -log(softmax(...)): exact in theory, -log(0) = inf once a probability underflows."""
    return -torch.log(trusted.softmax(logits, dim=-1))[trusted.arange(len(targets)), targets]


def nll_exp_over_sum(logits, targets):
    """token_nll as -log(exp(z) / sum exp(z)) with no maximum subtracted: exp(1000) = inf."""
    probs = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    return -torch.log(probs[trusted.arange(len(targets)), targets])


def nll_max_not_added_back(logits, targets):
    """token_nll computing log(sum exp(z - max)) - z[target]: the maximum subtracted but not added back."""
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    return torch.log(torch.exp(shifted).sum(-1)) - logits[trusted.arange(len(targets)), targets]


def nll_raw_logit(logits, targets):
    """token_nll returning -z[target], the raw logit, with no normalisation."""
    return -logits[trusted.arange(len(targets)), targets]


def nll_every_column(logits, targets):
    """token_nll indexing logits[:, targets]: an (N, N) table instead of one entry per row."""
    return -log_softmax(logits, dim=-1)[:, targets]


def nll_no_pick(logits, targets):
    """token_nll returning -log p of every vocabulary entry (N, V), no target picked."""
    return -log_softmax(logits, dim=-1)


def nll_in_place(logits, targets):
    """token_nll subtracting the row maximum in place (logits -= max): right values, the caller's logits changed."""
    logits -= logits.max(dim=-1, keepdim=True).values
    return torch.log(torch.exp(logits).sum(-1)) - logits[trusted.arange(len(targets)), targets]


def nll_detached_logsumexp(logits, targets):
    """token_nll with logsumexp(...).detach(): right values, the gradient is -one_hot(target) only."""
    return torch.logsumexp(logits, dim=-1).detach() - logits[trusted.arange(len(targets)), targets]


_TOKEN_NLL = catalogue(
    "token_nll",
    Mistake("log p instead of -log p (the minus sign is missing)", nll_log_p,
            "the loss is -log p(target), always >= 0: negate the log-probability"),
    Mistake("the mean over the rows instead of one loss per row", nll_mean,
            "token_nll returns -log p for every row, shape (N,); averaging them is masked_mean_nll's job"),
    Mistake("the sum over the rows instead of one loss per row", nll_sum,
            "token_nll returns -log p for every row, shape (N,); do not reduce over the rows"),
    Mistake("normalised over the rows (dim=0) instead of the vocabulary (dim=-1)", nll_dim0,
            "each row is a distribution over the vocabulary: normalise along the last dimension, dim=-1"),
    Mistake("p(target) instead of -log p(target)", nll_probability,
            "the target's probability p is not the loss; the loss is -log p"),
    Mistake("1 - p(target) instead of -log p(target)", nll_one_minus_p,
            "1 - p is not the loss; the loss is -log p(target) = logsumexp(row) - row[target]"),
    Mistake("softmax then log: -log(0) = inf once a probability underflows", nll_softmax_then_log,
            "a probability of 1e-435 is 0 in float32: compute log p directly, as row[target] - logsumexp(row) "
            "(or F.log_softmax)"),
    Mistake("exp / sum without subtracting the maximum: exp(1000) = inf", nll_exp_over_sum,
            "exp(1000) is inf in float32: subtract the row maximum first, i.e. use logsumexp or F.log_softmax"),
    Mistake("the row maximum subtracted but not added back", nll_max_not_added_back,
            "logsumexp(z) = max + log(sum(exp(z - max))): add the maximum back, or use the shifted row throughout"),
    Mistake("-row[target], the raw logit, without the log-normaliser", nll_raw_logit,
            "-log p(target) = logsumexp(row) - row[target]: the logsumexp term is missing"),
    Mistake("logits[:, targets]: an (N, N) table instead of one entry per row", nll_every_column,
            "pick one entry per row: logits[torch.arange(N), targets] or gather(1, targets[:, None])"),
    Mistake("-log p of every vocabulary entry, no target picked", nll_no_pick,
            "pick the target's entry in each row: log_probs[torch.arange(N), targets]"),
    Mistake("logits -= max: the caller's logits are changed in place", nll_in_place,
            "avoid in-place operations such as logits -= max; build a new tensor: shifted = logits - max"),
    Mistake("logsumexp detached from the graph", nll_detached_logsumexp,
            "keep every term in the graph: no .detach() on logsumexp (the maximum alone may be detached)"),
)

_TOKEN_HINT = "-log p(target) = logsumexp(row) - row[target]; pick one entry per row, e.g. with gather or arange indexing"


def _token_case(fn, case: str, logits: torch.Tensor, targets: torch.Tensor, passed_cases: list) -> torch.Tensor:
    expected = _nll(logits, targets)
    with _refuse_builtin_losses("token_nll"):
        received = call(case, fn, logits.clone(), targets.clone(), hint=_TOKEN_HINT)
    _expect_loss(case, received, expected, _matches(_TOKEN_NLL, passed_cases, (logits, targets), received), _TOKEN_HINT,
                 scalar_hint="token_nll returns one -log p per row, shape (N,)")
    passed_cases.append(((logits, targets), received))
    return received


def _expect_inputs_unchanged(fn: Callable, logits: torch.Tensor, targets: torch.Tensor, hint: str,
                             mistakes=(), *extra) -> None:
    """Fail if fn modifies its logits or targets in place."""
    case = "the inputs are left unchanged"
    before_logits, before_targets = logits.clone(), targets.clone()
    call(case, fn, logits, targets, *extra)
    if not (equal(logits, before_logits) and equal(targets, before_targets)):

        def after(f):
            mine = (before_logits.clone(), before_targets.clone())
            f(*mine, *extra)
            return mine

        found = matching(mistakes, after, (logits, targets), _same)
        changed = " and ".join(name for name, now, was in (("logits", logits, before_logits),
                                                            ("targets", targets, before_targets)) if not equal(now, was))
        fail(case, "logits and targets as they were passed in", f"the {changed} were modified in place", hint, found)


def _differentiable_output(name: str, fn: Callable, case: str, x: torch.Tensor, targets: torch.Tensor,
                           hint: str) -> torch.Tensor:
    """fn(x, targets) with the built-in losses refused; fail unless autograd can differentiate it."""
    with _refuse_builtin_losses(name):
        out = call(case, fn, x, targets.clone())
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        fail(case, "a result that autograd can differentiate", "a tensor with requires_grad=False", hint)
    return out


def _gradient_of(fn: Callable, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fn's output, the gradient of its sum with respect to the logits)."""
    x = logits.clone().requires_grad_(True)
    out = fn(x, targets.clone())
    out.sum().backward()
    return out.detach(), x.grad


@register
def check_token_nll(token_nll) -> None:
    """Check token_nll(logits (N, V), targets (N,)) -> (N,) of -log p(target)."""
    _no_builtin_loss("token_nll", token_nll)
    cases: list = []  # the cases passed so far, for matching a failure against the catalogue
    _token_case(token_nll, "the worked example: 3 tokens, vocabulary of 6", EXAMPLE_LOGITS, EXAMPLE_TARGETS, cases)
    _token_case(token_nll, "one row (N = 1), two-word vocabulary", torch.tensor([[0.0, 2.0]]), torch.tensor([0]), cases)

    g = torch.Generator().manual_seed(101)
    logits = 3 * torch.randn(7, 20, generator=g)
    targets = torch.randint(20, (7,), generator=g)
    _token_case(token_nll, "random logits (7, 20)", logits, targets, cases)

    large = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 500.0], [-1000.0, -1000.0, 1000.0], [1000.0, 999.0, 0.0]])
    _token_case(token_nll, "logits of magnitude 1000 (targets 1, 2, 0, 1: -log p = 1000, 500, 2000, 1.31)",
                large, torch.tensor([1, 2, 0, 1]), cases)

    _expect_inputs_unchanged(token_nll, logits, targets,
                             "the check passes tensors it compares afterwards: build new tensors instead of "
                             "writing into logits or targets (no -=, no [...] =)", _TOKEN_NLL)

    # Gradients: d(sum of losses)/d logits = softmax - one_hot(target); .item(), numpy or detach break this.
    case = "gradient of the summed loss with respect to the logits"
    x = logits.clone().requires_grad_(True)
    out = _differentiable_output("token_nll", token_nll, case, x, targets,
                                 "use torch operations only: no .item(), .tolist(), numpy or .detach() inside token_nll")
    call(case, lambda: out.sum().backward())
    expected_grad = trusted.softmax(logits.double(), dim=-1) - trusted.one_hot(targets, 20).double()
    if x.grad is None:
        fail(case, "a gradient on the logits", "None", "keep the logits in the computation graph")
    if not allclose(x.grad.double(), expected_grad, atol=1e-5, rtol=1e-5):
        found = matching(_TOKEN_NLL, lambda f: _gradient_of(f, logits, targets), (out.detach(), x.grad),
                         lambda a, b: _same(a, b, 1e-5))
        fail(case, short(expected_grad.float()),
             f"{short(x.grad)} (largest difference {(x.grad.double() - expected_grad).abs().max().item():.3g})",
             "the gradient should be softmax(logits) - one_hot(target)", found)

    passed("token_nll", "per-token -log p right on the worked example (0.360, 0.396, 0.245), random logits, "
           "logits of ±1000 and gradients")


# -- masked_mean_nll ------------------------------------------------------------------------------

def _flat(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)


def _kept_nll(logits, targets, ignore_index):
    """(-log p at every position with the ignored targets read as 0, the kept mask), both flat."""
    logits, targets = _flat(logits, targets)
    keep = targets != ignore_index
    safe = trusted.where(keep, targets, trusted.zeros(targets.shape, dtype=targets.dtype))
    return -_log_p(logits, safe), keep


def masked_over_all_positions(logits, targets, ignore_index=-100):
    """masked_mean_nll that zeroes the ignored positions but divides by every position."""
    nll, keep = _kept_nll(logits, targets, ignore_index)
    return (nll * keep).sum() / keep.numel()


def masked_dummy_target(logits, targets, ignore_index=-100):
    """masked_mean_nll that scores the ignored positions as predicting token 0 and averages everything."""
    nll, _ = _kept_nll(logits, targets, ignore_index)
    return nll.mean()


def masked_hard_coded(logits, targets, ignore_index=-100):
    """masked_mean_nll that ignores -100 whatever ignore_index is."""
    nll, keep = _kept_nll(logits, targets, -100)
    return nll[keep].mean()


def masked_sum(logits, targets, ignore_index=-100):
    """masked_mean_nll returning the sum over the kept positions."""
    nll, keep = _kept_nll(logits, targets, ignore_index)
    return nll[keep].sum()


def masked_mean_of_means(logits, targets, ignore_index=-100):
    """masked_mean_nll averaging each sequence first, then the sequences that have a kept position."""
    if logits.dim() == 2:
        logits, targets = logits[None], targets[None]
    means = [_kept_mean(z, t, ignore_index) for z, t in zip(logits, targets) if bool((t != ignore_index).any())]
    return torch.stack(means).mean()


def _kept_mean(logits, targets, ignore_index):
    nll, keep = _kept_nll(logits, targets, ignore_index)
    return nll[keep].mean()


def masked_keepdim(logits, targets, ignore_index=-100):
    """masked_mean_nll returning shape (1,) instead of a scalar."""
    return _kept_mean(logits, targets, ignore_index).reshape(1)


def masked_per_position(logits, targets, ignore_index=-100):
    """masked_mean_nll returning the loss of every position (ignored ones 0), not their mean."""
    nll, keep = _kept_nll(logits, targets, ignore_index)
    return (nll * keep).view(targets.shape)


def masked_kept_positions(logits, targets, ignore_index=-100):
    """masked_mean_nll returning the loss of each kept position, not their mean."""
    nll, keep = _kept_nll(logits, targets, ignore_index)
    return nll[keep]


def masked_in_place(logits, targets, ignore_index=-100):
    """masked_mean_nll writing targets[targets == ignore_index] = 0: the caller's labels change."""
    keep = (targets != ignore_index).reshape(-1)
    targets[targets == ignore_index] = 0
    logits, flat = _flat(logits, targets)
    return -_log_p(logits, flat)[keep].mean()


def masked_softmax_then_log(logits, targets, ignore_index=-100):
    """masked_mean_nll with -log(softmax(...)): inf once a probability underflows."""
    logits, targets = _flat(logits, targets)
    keep = targets != ignore_index
    return nll_softmax_then_log(logits[keep], targets[keep]).mean()


def masked_exp_over_sum(logits, targets, ignore_index=-100):
    """masked_mean_nll with exp / sum and no maximum subtracted: exp(1000) = inf."""
    logits, targets = _flat(logits, targets)
    keep = targets != ignore_index
    return nll_exp_over_sum(logits[keep], targets[keep]).mean()


_STABLE_HINT = ("compute log p without exp(1000) = inf or log(0): log p = row[target] - logsumexp(row), "
                "or F.log_softmax")

_MASKED_MEAN_NLL = catalogue(
    "masked_mean_nll",
    Mistake("divided by all positions, the ignored ones included", masked_over_all_positions,
            "the ignored positions are in your mean: divide by the number of kept positions, not by all positions"),
    Mistake("ignored positions scored as predicting token 0", masked_dummy_target,
            "drop the ignored positions from the mean instead of giving them a dummy target"),
    Mistake("-100 hard-coded instead of ignore_index", masked_hard_coded,
            "use the ignore_index argument, not a hard-coded -100"),
    Mistake("the sum over the kept positions, not the mean", masked_sum,
            "that is the sum; the loss is the mean over the kept positions"),
    Mistake("a mean of per-sequence means", masked_mean_of_means,
            "average over all kept tokens of the batch at once, not sequence by sequence"),
    Mistake("shape (1,) instead of a scalar", masked_keepdim,
            "return a 0-dimensional tensor: no keepdim, no reshape(1)"),
    Mistake("the loss of every position, not their mean", masked_per_position,
            "average over the kept positions: one number for the whole batch"),
    Mistake("the loss of each kept position, not their mean", masked_kept_positions,
            "average the kept positions' losses: one number for the whole batch"),
    Mistake("targets[targets == ignore_index] = 0 changes the caller's labels", masked_in_place,
            "targets[targets == -100] = 0 changes the caller's labels; use torch.where or a boolean mask instead"),
    # On logits of ±1000 both give inf: one hint that is right for either.
    Mistake("softmax then log: -log(0) = inf once a probability underflows", masked_softmax_then_log, _STABLE_HINT),
    Mistake("exp / sum without subtracting the maximum: exp(1000) = inf", masked_exp_over_sum, _STABLE_HINT),
)

_MASKED_HINT = ("flatten logits to (N, V) and targets to (N,), then average -log p over the positions whose "
                "target is not ignore_index (and only those)")


def _masked_case(fn, case: str, logits: torch.Tensor, targets: torch.Tensor, passed_cases: list,
                 ignore_index: int | None = None):
    index = -100 if ignore_index is None else ignore_index
    expected = cross_entropy(logits.double().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=index)
    args = (logits, targets) + (() if ignore_index is None else (ignore_index,))
    with _refuse_builtin_losses("masked_mean_nll"):
        received = call(case, fn, *_clones(args), hint=_MASKED_HINT)
    _expect_loss(case, received, expected, _matches(_MASKED_MEAN_NLL, passed_cases, args, received),
                 _MASKED_HINT, scalar_hint="average over every kept position of every sequence: a scalar tensor")
    passed_cases.append((args, received))


@register
def check_masked_mean_nll(masked_mean_nll) -> None:
    """Check masked_mean_nll(logits (..., V), targets (...), ignore_index=-100) -> scalar mean."""
    _no_builtin_loss("masked_mean_nll", masked_mean_nll)
    g = torch.Generator().manual_seed(202)

    # Two sequences with 1 and 3 supervised positions: a mean of means and a mean over all differ.
    logits = 2 * torch.randn(2, 5, 20, generator=g)
    targets = torch.tensor([[-100, -100, -100, 10, -100], [-100, 4, 9, 12, -100]])
    cases: list = []  # the cases passed so far, for matching a failure against the catalogue
    _masked_case(masked_mean_nll, "batch (2, 5, 20) with labels -100, default ignore_index", logits, targets, cases)

    flat_logits = 2 * torch.randn(6, 20, generator=g)
    flat_targets = torch.tensor([3, -100, 7, -100, -100, 19])
    _masked_case(masked_mean_nll, "flat logits (6, 20), ignore_index=-100 passed explicitly", flat_logits, flat_targets,
                 cases, -100)

    pad_targets = torch.tensor([[1, 5, 9, 0, 0], [1, 6, 7, 8, 0]])  # ignore the padding (PAD = 0) instead
    _masked_case(masked_mean_nll, "batch (2, 5, 20) with ignore_index=0 and no -100 anywhere", logits, pad_targets, cases, 0)

    _masked_case(masked_mean_nll, "nothing ignored: the plain mean of all positions",
                 flat_logits, torch.tensor([3, 0, 7, 2, 11, 19]), cases)

    large = torch.tensor([[[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0], [5.0, 0.0, 0.0]]])
    _masked_case(masked_mean_nll, "logits of magnitude 1000, third position ignored", large, torch.tensor([[1, 0, -100]]), cases)

    _expect_inputs_unchanged(masked_mean_nll, logits, targets,
                             "the check passes tensors it compares afterwards: build new tensors instead of writing "
                             "into logits or targets (torch.where or a boolean mask, no [...] =)", _MASKED_MEAN_NLL)

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
             "a position labelled -100 must not influence the loss at all")
    expect_close(case, x.grad, reference.grad, atol=1e-5, hint="the gradient should equal F.cross_entropy's")

    passed("masked_mean_nll", "equals F.cross_entropy(..., ignore_index) on batches and flat inputs, "
           "with -100 and with a custom ignore_index, on logits of ±1000 and in its gradients")
