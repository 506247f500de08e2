"""Checks for notebook 09_inside: linear_probe_accuracy, a ridge-regression probe scored on held-out rows.

A failure is diagnosed by matching (see _mistakes.py): an accuracy is one number, and many mistakes
give the same number on one case (0.5 is common), so a catalogue mistake matches only if it gives
the student's result on the failing case AND on every case of check_linear_probe_accuracy.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..inside import linear_probe_accuracy as _reference
from ._common import call, equal, fail, passed, quiet, raised, register, short
from ._mistakes import Mistake, catalogue, matching

__all__ = ["check_linear_probe_accuracy", "expect_probe"]

_TOLERANCE = 1e-6  # accuracies are multiples of 1 / len(test_y); float32 means are not exact


# -- the catalogue: the reference with one mistake each ---------------------------------------------

def _probe(train_x, train_y, test_x, test_y, ridge=1e-3, *, bias=True, one_hot=True, ridge_on="diagonal",
           fit_on="train", score_on="test", argmax_dim=1, result="fraction"):
    """The reference probe; each keyword but the defaults is one mistake of the catalogue."""
    if fit_on == "test":
        train_x, train_y = test_x, test_y
    if score_on == "train":
        test_x, test_y = train_x, train_y

    def design(x):
        x = x.double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1) if bias else x

    x = design(train_x)
    y = F.one_hot(train_y.long(), int(train_y.max()) + 1).double() if one_hot else train_y.double()
    gram = x.T @ x
    if ridge_on == "diagonal":
        gram = gram + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    elif ridge_on == "features only":  # the bias row left out of the ridge
        eye = torch.eye(x.shape[1], dtype=torch.float64)
        eye[-1, -1] = 0.0
        gram = gram + ridge * eye
    w = torch.linalg.pinv(x) @ y if ridge_on == "none" else torch.linalg.solve(gram, x.T @ y)
    scores = design(test_x) @ w
    if one_hot:
        predicted = scores.argmax(argmax_dim)
    else:
        predicted = scores.round().clamp(0, int(train_y.max())).long()
    if result == "predictions":
        return predicted
    right = predicted.eq(test_y.long()).double()
    return {"fraction": right.mean().item(), "percent": 100 * right.mean().item(), "count": right.sum().item(),
            "error rate": 1 - right.mean().item()}[result]


def _centres_in_place(train_x, train_y, test_x, test_y, ridge=1e-3):
    train_x -= train_x.mean(0)  # the caller's tensor changes
    return _probe(train_x, train_y, test_x, test_y, ridge)


P = functools.partial
MISTAKES = catalogue(
    "linear_probe_accuracy",
    Mistake("no bias column", P(_probe, bias=False),
            "append a column of ones to train_x and to test_x (X = [x, 1]) so every class score gets an intercept"),
    Mistake("ridge ignored (plain least squares)", P(_probe, ridge_on="none"),
            "W = solve(X^T X + ridge * I, X^T Y): the ridge term shrinks the weights and changes predictions"),
    Mistake("ridge not applied to the bias row", P(_probe, ridge_on="features only"),
            "add ridge * I over all D + 1 rows of X^T X, the bias row included (the contract's identity)"),
    Mistake("class ids regressed as numbers, not one-hot", P(_probe, one_hot=False),
            "regress one-hot targets (F.one_hot(train_y, K), K = train_y.max() + 1) and take the argmax over the "
            "K columns; a class id is not a quantity to regress"),
    Mistake("argmax over the rows (dim 0), not the classes", P(_probe, argmax_dim=0),
            "the scores are (M, K): one row per test example, so take argmax(dim=1) over the K classes"),
    Mistake("scored on the training rows", P(_probe, score_on="train"),
            "fit the weights on (train_x, train_y), then predict test_x and compare with test_y"),
    Mistake("fitted on the test rows", P(_probe, fit_on="test"),
            "fit the weights on (train_x, train_y) only; the test rows are for scoring"),
    Mistake("a percentage, not a fraction", P(_probe, result="percent"),
            "return a fraction between 0 and 1, not a percentage"),
    Mistake("the count of right rows, not their fraction", P(_probe, result="count"),
            "return the fraction of test rows predicted right (a mean), not their number"),
    Mistake("the error rate (1 - accuracy)", P(_probe, result="error rate"),
            "return the fraction of test rows predicted RIGHT: (predicted == test_y).float().mean()"),
    Mistake("the predicted classes, not the accuracy", P(_probe, result="predictions"),
            "compare the predictions with test_y and return the mean: one float"),
    Mistake("train_x centred in place", _centres_in_place,
            "build new tensors (x - x.mean(0), torch.cat) instead of writing into train_x or test_x"),
)


# -- matching ---------------------------------------------------------------------------------------

def _outcome(fn, data: tuple, ridge: float) -> tuple:
    """What fn does with copies of data: ("value", result) and the inputs after the call, or ("raises", error)."""
    given = [t.clone() for t in data]
    try:
        with quiet():
            result = fn(*given, ridge=ridge)
    except Exception as error:  # noqa: BLE001 - an exception is an outcome to compare
        return ("raises", raised(error))
    if isinstance(result, torch.Tensor):
        result = result.detach().cpu().double()
        result = result.item() if result.numel() == 1 else result
    return ("value", result, tuple(t.detach().cpu().double() for t in given))


def _same_value(x: object, y: object) -> bool:
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape
                and bool(equal(x, y)))
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return abs(float(x) - float(y)) <= _TOLERANCE
    return x == y


def _same(x: tuple, y: tuple) -> bool:
    """Two fingerprints (one outcome per case) agree: the same values, errors and inputs after each call."""
    if len(x) != len(y):
        return False
    for a, b in zip(x, y):
        if a[0] != b[0] or (a[0] == "raises" and a[1] != b[1]):
            return False
        if a[0] == "value" and not (_same_value(a[1], b[1]) and all(equal(s, t) for s, t in zip(a[2], b[2]))):
            return False
    return True


def _fingerprint(fn, data: tuple, ridge: float) -> tuple:
    """fn's outcome on the failing case and on every case of the check: what a catalogue mistake must reproduce."""
    return (_outcome(fn, data, ridge), *(_outcome(fn, d, r) for _, d, r, _, _ in _cases()))


def _matches(fn, data: tuple, ridge: float) -> list[Mistake]:
    received = _fingerprint(fn, data, ridge)
    return matching(MISTAKES, lambda mistake: _fingerprint(mistake, data, ridge), received, _same)


# -- the checks -------------------------------------------------------------------------------------

def _as_float(case: str, value: object, diagnose) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(case, "a Python float: the fraction of test rows predicted right", short(value),
             "return accuracy as a float, e.g. `(predicted == test_y).float().mean().item()`", diagnose())
    return float(value)


@register
def expect_probe(case: str, linear_probe_accuracy, train_x, train_y, test_x, test_y, ridge: float,
                 expected: float | None = None, hint: str = "") -> None:
    """Call the student's probe on copies of the data and compare with the expected accuracy (reference if None).

    hint: what to look at when the accuracy differs and no catalogue mistake matches (an expectation, not a guess).
    """
    data = (train_x, train_y, test_x, test_y)
    if expected is None:
        expected = _reference(*data, ridge)
    given = [t.clone() for t in data]
    diagnose = functools.partial(_matches, linear_probe_accuracy, data, ridge)  # run only when a case fails
    try:
        with quiet():
            result = linear_probe_accuracy(*given, ridge=ridge)
    except NotImplementedError:
        call(case, linear_probe_accuracy, *given, ridge=ridge)  # the stub's own message
    except Exception as error:  # noqa: BLE001 - student code; a catalogue mistake may raise the same error
        fail(case, "no exception", raised(error),
             "linear_probe_accuracy(train_x, train_y, test_x, test_y, ridge) should return a float", diagnose())
    if any(not equal(a, b) for a, b in zip(given, data)):
        changed = ", ".join(n for n, a, b in zip(("train_x", "train_y", "test_x", "test_y"), given, data)
                            if not equal(a, b))
        fail(case, "the tensors you are given left unchanged", f"{changed} changed during the call (in place)",
             "build new tensors (torch.cat, one_hot, x - x.mean(0)) instead of writing into the inputs", diagnose())
    got = _as_float(case, result, diagnose)
    if abs(got - expected) > _TOLERANCE:
        n_test = len(test_y)
        received = f"{got:.4f}"
        if abs(got - 100 * expected) < _TOLERANCE and expected > 0:
            received += f" (100 x the expected {expected:.4f})"
        elif abs(got - round(expected * n_test)) < _TOLERANCE and n_test > 1:
            received += f" (the expected fraction x {n_test} test rows)"
        fail(case, f"accuracy {expected:.4f} on {n_test} test rows", received, hint, diagnose())


def _blobs(seed: int, n_train: int, n_test: int, dim: int, classes: int, spread: float) -> tuple[torch.Tensor, ...]:
    """Gaussian blobs around one random center per class -> train_x, train_y, test_x, test_y (float64)."""
    g = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(classes, dim, generator=g, dtype=torch.float64)
    data = []
    for n in (n_train, n_test):
        y = torch.randperm(n, generator=g) % classes
        data += [centers[y] + spread * torch.randn(n, dim, generator=g, dtype=torch.float64), y]
    return tuple(data)


@functools.lru_cache(maxsize=1)
def _cases() -> tuple:
    """The check's cases: (case, (train_x, train_y, test_x, test_y), ridge, expected or None, hint)."""
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    cases = [
        ("1-D features, 2 classes split at x = 2.5 (class 0 below, class 1 above)",
         (x, torch.tensor([0, 0, 1, 1]), torch.tensor([[1.5], [3.5], [0.5], [4.5]], dtype=torch.float64),
          torch.tensor([0, 1, 0, 1])), 1e-3, 1.0,
         "all features are positive; a probe with a bias (a column of ones in X) separates them at x = 2.5"),
        ("score on the test rows, not the training rows: the test labels here are the opposite class",
         (x, torch.tensor([0, 0, 1, 1]), torch.tensor([[1.0], [4.0], [0.0], [5.0]], dtype=torch.float64),
          torch.tensor([1, 0, 0, 1])), 1e-3, 0.5,
         "the weights come from (train_x, train_y); the accuracy compares the predictions for test_x with test_y"),
    ]
    # Three classes; class 0 at both ends of the first feature, so a class id is no number to regress.
    xs = torch.tensor([[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [1.1, 0.9], [2.0, 0.0], [2.1, 0.1], [3.0, 1.0], [3.1, 1.1]],
                      dtype=torch.float64)
    ys = torch.tensor([0, 0, 1, 1, 2, 2, 0, 0])
    cases.append(("3 classes, class 0 at both ends of the first feature", (xs, ys, xs + 0.05, ys), 1e-3, 1.0,
                  "the targets are one-hot (F.one_hot(train_y, K), K = train_y.max() + 1) and the prediction is "
                  "the argmax over the K columns"))
    # A strong ridge shrinks the weights and changes the predictions; the contract adds ridge * I to all D + 1 rows.
    train_x, train_y, test_x, test_y = _blobs(9, 30, 40, 5, 3, 2.0)
    for ridge in (1e-3, 30.0):  # far from the origin (+3), so a ridge that skipped the bias row would differ
        cases.append((f"30 training rows, 5 features, 3 classes, ridge = {ridge:g}",
                      (train_x + 3.0, train_y, test_x + 3.0, test_y), ridge, None,
                      "W = solve(X^T X + ridge * I, X^T Y) with X = [train_x, 1] (the identity covers the "
                      "bias row too) and Y the one-hot labels"))
    train_x, train_y, test_x, test_y = _blobs(11, 60, 50, 8, 5, 1.5)
    cases.append(("float32 features, 5 classes, 60 training rows",
                  (train_x.float(), train_y, test_x.float(), test_y), 1e-2, None, ""))
    return tuple(cases)


@register
def check_linear_probe_accuracy(linear_probe_accuracy) -> None:
    """Ridge probe with a bias on one-hot labels, fitted on train, scored on test; float in [0, 1]."""
    for case, data, ridge, expected, hint in _cases():
        expect_probe(case, linear_probe_accuracy, *data, ridge, expected, hint=hint)
    passed("linear_probe_accuracy", "a bias, one-hot targets, ridge on every row, scored on the test rows")
