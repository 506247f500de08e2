"""Checks for notebook 09_inside: linear_probe_accuracy, a ridge-regression probe scored on held-out rows."""

from __future__ import annotations

import torch

from ..inside import linear_probe_accuracy as _reference
from ._common import call, fail, passed, register, short

__all__ = ["check_linear_probe_accuracy", "expect_probe"]


def _as_float(case: str, value: object) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(case, "a Python float: the fraction of test rows predicted right", short(value),
             "return accuracy as a float, e.g. `(predicted == test_y).float().mean().item()`")
    return float(value)


@register
def expect_probe(case: str, linear_probe_accuracy, train_x, train_y, test_x, test_y, ridge: float,
                 expected: float | None = None, hint: str = "") -> None:
    """Call the student's probe on copies of the data and compare with the expected accuracy (reference if None)."""
    if expected is None:
        expected = _reference(train_x, train_y, test_x, test_y, ridge)
    given = [t.clone() for t in (train_x, train_y, test_x, test_y)]
    result = call(case, linear_probe_accuracy, *given, ridge=ridge,
                  hint="linear_probe_accuracy(train_x, train_y, test_x, test_y, ridge) should return a float")
    if any(not torch.equal(a, b) for a, b in zip(given, (train_x, train_y, test_x, test_y))):
        fail(case, "the tensors you are given left unchanged", "your function changed one of its inputs in place",
             "build new tensors (torch.cat, one_hot) instead of writing into train_x or test_x")
    got = _as_float(case, result)
    if abs(got - expected) > 1e-6:  # accuracies are multiples of 1 / len(test_y); float32 means are not exact
        n_test = len(test_y)
        if abs(got - 100 * expected) < 1e-6 and expected > 0:
            hint = "return a fraction between 0 and 1, not a percentage"
        elif abs(got - round(expected * n_test)) < 1e-6 and n_test > 1:
            hint = "return the fraction of test rows predicted right (a mean), not their number"
        fail(case, f"accuracy {expected:.4f} on {n_test} test rows", f"{got:.4f}", hint)


def _blobs(seed: int, n_train: int, n_test: int, dim: int, classes: int, spread: float) -> tuple[torch.Tensor, ...]:
    """Gaussian blobs around one random center per class -> train_x, train_y, test_x, test_y (float64)."""
    g = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(classes, dim, generator=g, dtype=torch.float64)
    data = []
    for n in (n_train, n_test):
        y = torch.randperm(n, generator=g) % classes
        data += [centers[y] + spread * torch.randn(n, dim, generator=g, dtype=torch.float64), y]
    return tuple(data)


@register
def check_linear_probe_accuracy(linear_probe_accuracy) -> None:
    """Ridge probe with a bias on one-hot labels, fitted on train, scored on test; float in [0, 1]."""
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    expect_probe("1-D features, 2 classes split at x = 2.5 (class 0 below, class 1 above)", linear_probe_accuracy,
                 x, torch.tensor([0, 0, 1, 1]), torch.tensor([[1.5], [3.5], [0.5], [4.5]], dtype=torch.float64),
                 torch.tensor([0, 1, 0, 1]), 1e-3, 1.0,
                 hint="all features are positive, so without a bias every row gets the same class: "
                      "append a column of ones to train_x and test_x")
    expect_probe("score on the test rows, not the training rows: the test labels here are the opposite class",
                 linear_probe_accuracy, x, torch.tensor([0, 0, 1, 1]),
                 torch.tensor([[1.0], [4.0], [0.0], [5.0]], dtype=torch.float64), torch.tensor([1, 0, 0, 1]), 1e-3, 0.5,
                 hint="fit the weights on (train_x, train_y), then predict test_x and compare with test_y")
    # Three classes; class 0 at both ends of the first feature, so a class id is no number to regress.
    xs = torch.tensor([[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [1.1, 0.9], [2.0, 0.0], [2.1, 0.1], [3.0, 1.0], [3.1, 1.1]],
                      dtype=torch.float64)
    ys = torch.tensor([0, 0, 1, 1, 2, 2, 0, 0])
    expect_probe("3 classes, class 0 at both ends of the first feature", linear_probe_accuracy, xs, ys, xs + 0.05, ys,
                 1e-3, 1.0,
                 hint="regress one-hot targets (F.one_hot(train_y, K), K = train_y.max() + 1) and take the argmax "
                      "over the K columns; the class id itself is not a quantity to regress")
    # A strong ridge shrinks the weights and changes the predictions; the contract adds ridge * I to all D + 1 rows.
    train_x, train_y, test_x, test_y = _blobs(9, 30, 40, 5, 3, 2.0)
    shifted = train_x + 3.0  # far from the origin, so a ridge that skipped the bias row would differ
    for ridge in (1e-3, 30.0):
        expect_probe(f"30 training rows, 5 features, 3 classes, ridge = {ridge:g}", linear_probe_accuracy,
                     shifted, train_y, test_x + 3.0, test_y, ridge,
                     hint="W = solve(X^T X + ridge * I, X^T Y) with X = [train_x, 1] (the identity covers the "
                          "bias row too) and Y the one-hot labels")
    train_x, train_y, test_x, test_y = _blobs(11, 60, 50, 8, 5, 1.5)
    expect_probe("float32 features, 5 classes, 60 training rows", linear_probe_accuracy, train_x.float(), train_y,
                 test_x.float(), test_y, 1e-2)
    passed("linear_probe_accuracy", "a bias, one-hot targets, ridge on every row, scored on the test rows")
