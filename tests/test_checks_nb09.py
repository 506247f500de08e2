"""check_linear_probe_accuracy rejects typical probe mistakes with a specific hint and accepts correct variants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_assertions import assert_accepts, assert_rejects

import tutor_lib
from tutor_lib.checks import CheckError, check_linear_probe_accuracy, not_reference
from tutor_lib.checks.nb09_inside import expect_probe


def _with_bias(x):
    return torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)


def _ridge(x, y, ridge, k=None):
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(x.T @ x + ridge * eye, x.T @ F.one_hot(y, k or int(y.max()) + 1).double())


# -- correct variants --------------------------------------------------------------------------

def solve_version(train_x, train_y, test_x, test_y, ridge=1e-3):
    w = _ridge(_with_bias(train_x), train_y, ridge)
    return ((_with_bias(test_x) @ w).argmax(1) == test_y).double().mean().item()


def lstsq_version(train_x, train_y, test_x, test_y, ridge=1e-3):
    """Ridge as ordinary least squares on rows [X; sqrt(ridge) I] and targets [Y; 0]."""
    x = _with_bias(train_x)
    y = F.one_hot(train_y).double()
    d = x.shape[1]
    a = torch.cat([x, ridge ** 0.5 * torch.eye(d, dtype=torch.float64)])
    b = torch.cat([y, torch.zeros(d, y.shape[1], dtype=torch.float64)])
    w = torch.linalg.lstsq(a, b).solution
    return float(((_with_bias(test_x) @ w).argmax(1) == test_y).float().mean())


def float32_inverse_tensor(train_x, train_y, test_x, test_y, ridge=1e-3):
    """float32, an explicit inverse, and a 0-d tensor as the result."""
    x = torch.cat([train_x.float(), torch.ones(len(train_x), 1)], 1)
    w = torch.linalg.inv(x.T @ x + ridge * torch.eye(x.shape[1])) @ (x.T @ F.one_hot(train_y).float())
    scores = torch.cat([test_x.float(), torch.ones(len(test_x), 1)], 1) @ w
    return (scores.argmax(-1) == test_y).float().mean()


@pytest.mark.parametrize("fn", [solve_version, lstsq_version, float32_inverse_tensor,
                                tutor_lib.inside.linear_probe_accuracy])
def test_accepts_correct_versions(fn, capsys):
    assert_accepts(check_linear_probe_accuracy, fn, capsys, "linear_probe_accuracy", "scored on the test rows")


# -- typical mistakes ------------------------------------------------------------------------------

def no_bias(train_x, train_y, test_x, test_y, ridge=1e-3):
    w = _ridge(train_x.double(), train_y, ridge)
    return ((test_x.double() @ w).argmax(1) == test_y).double().mean().item()


def scored_on_train(train_x, train_y, test_x, test_y, ridge=1e-3):
    return solve_version(train_x, train_y, train_x, train_y, ridge)


def no_ridge(train_x, train_y, test_x, test_y, ridge=1e-3):
    w = torch.linalg.pinv(_with_bias(train_x)) @ F.one_hot(train_y).double()
    return ((_with_bias(test_x) @ w).argmax(1) == test_y).double().mean().item()


def bias_not_regularised(train_x, train_y, test_x, test_y, ridge=1e-3):
    x = _with_bias(train_x)
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    eye[-1, -1] = 0.0
    w = torch.linalg.solve(x.T @ x + ridge * eye, x.T @ F.one_hot(train_y).double())
    return ((_with_bias(test_x) @ w).argmax(1) == test_y).double().mean().item()


def class_id_regressed(train_x, train_y, test_x, test_y, ridge=1e-3):
    """One output: regress the class id as a number and round it."""
    x = _with_bias(train_x)
    w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=torch.float64), x.T @ train_y.double())
    predicted = (_with_bias(test_x) @ w).round().clamp(0, int(train_y.max())).long()
    return (predicted == test_y).double().mean().item()


def percentage(*args, **kwargs):
    return 100 * solve_version(*args, **kwargs)


def count_right(train_x, train_y, test_x, test_y, ridge=1e-3):
    return solve_version(train_x, train_y, test_x, test_y, ridge) * len(test_y)


def returns_predictions(train_x, train_y, test_x, test_y, ridge=1e-3):
    return (_with_bias(test_x) @ _ridge(_with_bias(train_x), train_y, ridge)).argmax(1)


def writes_into_input(train_x, train_y, test_x, test_y, ridge=1e-3):
    train_x -= train_x.mean(0)  # centres in place: the caller's tensor changes
    return solve_version(train_x, train_y, test_x, test_y, ridge)


@pytest.mark.parametrize("fn, fragments", [
    (no_bias, ["2 classes split at x = 2.5", "received: 0.5000", "without a bias"]),
    (scored_on_train, ["score on the test rows", "expected: accuracy 0.5000", "received: 1.0000", "then predict test_x"]),
    (no_ridge, ["ridge = 30", "the identity covers the bias row too"]),
    (bias_not_regularised, ["ridge = 30", "the identity covers the bias row too"]),
    (class_id_regressed, ["class 0 at both ends", "regress one-hot targets"]),
    (percentage, ["received: 100.0000", "a fraction between 0 and 1, not a percentage"]),
    (count_right, ["received: 4.0000", "not their number"]),
    (returns_predictions, ["a Python float", "tensor of shape (4,)"]),
    (writes_into_input, ["left unchanged", "changed one of its inputs in place"]),
])
def test_rejects_typical_mistakes(fn, fragments, capsys):
    assert_rejects(check_linear_probe_accuracy, fn, *fragments, capsys=capsys)


def test_an_exception_in_student_code_names_the_case():
    def broken(train_x, train_y, test_x, test_y, ridge=1e-3):
        raise RuntimeError("shapes do not match")

    message = assert_rejects(check_linear_probe_accuracy, broken, "RuntimeError: shapes do not match",
                             "should return a float")
    assert "1-D features" in message


def test_expect_probe_uses_the_reference_when_no_value_is_given():
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.arange(20) % 2
    expect_probe("reference", solve_version, x, y, x, y, 0.1)
    with pytest.raises(CheckError, match="accuracy"):
        expect_probe("wrong", lambda *a, **k: 0.0123, x, y, x, y, 0.1)


def test_hidden_test_rejects_the_reference():
    with pytest.raises(CheckError, match="tutor_lib"):
        not_reference("linear_probe_accuracy", tutor_lib.inside.linear_probe_accuracy,
                      [tutor_lib.inside.linear_probe_accuracy])

    def wraps(train_x, train_y, test_x, test_y, ridge=1e-3):
        return tutor_lib.inside.linear_probe_accuracy(train_x, train_y, test_x, test_y, ridge)

    with pytest.raises(CheckError, match="linear_probe_accuracy"):
        not_reference("linear_probe_accuracy", wraps, [tutor_lib.inside.linear_probe_accuracy])
    not_reference("linear_probe_accuracy", solve_version, [tutor_lib.inside.linear_probe_accuracy])
