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


def argmax_over_rows(train_x, train_y, test_x, test_y, ridge=1e-3):
    scores = _with_bias(test_x) @ _ridge(_with_bias(train_x), train_y, ridge)
    return (scores.argmax(0) == test_y).float().mean().item()


def error_rate(*args, **kwargs):
    return 1.0 - solve_version(*args, **kwargs)


# -- wrong variants that are no catalogued mistake: the message must name none -----------------------

def always_half(train_x, train_y, test_x, test_y, ridge=1e-3):
    """0.5 is what `no bias column` gives on the first case: one case alone would misname it."""
    return 0.5


def argmin_predictions(train_x, train_y, test_x, test_y, ridge=1e-3):
    scores = _with_bias(test_x) @ _ridge(_with_bias(train_x), train_y, ridge)
    return (scores.argmin(1) == test_y).double().mean().item()


def ridge_on_every_entry_and_no_bias(train_x, train_y, test_x, test_y, ridge=1e-3):
    """No bias, and `x.T @ x + ridge` (ridge on every entry): the second changes no prediction of the check's
    cases, so on every case this is exactly `no bias column`, and is named so."""
    x = train_x.double()
    w = torch.linalg.solve(x.T @ x + ridge, x.T @ F.one_hot(train_y).double())
    return ((test_x.double() @ w).argmax(1) == test_y).double().mean().item()


def majority_class(train_x, train_y, test_x, test_y, ridge=1e-3):
    return (test_y == train_y.mode().values).double().mean().item()


def bias_of_twos(train_x, train_y, test_x, test_y, ridge=1e-3):
    """A bias column of 2s: the ridge shrinks the bias weight differently."""
    def x2(x):
        return torch.cat([x.double(), 2 * torch.ones(len(x), 1, dtype=torch.float64)], 1)
    w = _ridge(x2(train_x), train_y, ridge)
    return ((x2(test_x) @ w).argmax(1) == test_y).double().mean().item()


def scored_on_train_as_percentage(*args, **kwargs):
    return 100 * scored_on_train(*args, **kwargs)


@pytest.mark.parametrize("fn, fragments, names", [
    (no_bias, ["2 classes split at x = 2.5", "received: 0.5000", "a column of ones"], "no bias column"),
    (scored_on_train, ["score on the test rows", "expected: accuracy 0.5000", "received: 1.0000",
                       "then predict test_x"], "scored on the training rows"),
    (no_ridge, ["ridge = 30", "ridge term"], "ridge ignored (plain least squares)"),
    (bias_not_regularised, ["ridge = 30", "the bias row included"], "ridge not applied to the bias row"),
    (class_id_regressed, ["class 0 at both ends", "regress one-hot targets"],
     "class ids regressed as numbers, not one-hot"),
    (percentage, ["received: 100.0000", "a fraction between 0 and 1, not a percentage"],
     "a percentage, not a fraction"),
    (count_right, ["received: 4.0000", "not their number"], "the count of right rows, not their fraction"),
    (returns_predictions, ["a Python float", "tensor of shape (4,)"], "the predicted classes, not the accuracy"),
    (writes_into_input, ["left unchanged", "train_x changed during the call (in place)"], "train_x centred in place"),
    (argmax_over_rows, ["RuntimeError", "argmax(dim=1)"], "argmax over the rows (dim 0), not the classes"),
    (error_rate, ["received: 0.0000", "predicted RIGHT"], "the error rate (1 - accuracy)"),
    (always_half, ["received: 0.5000", "expected: accuracy 1.0000"], None),
    (argmin_predictions, ["expected: accuracy"], None),
    (ridge_on_every_entry_and_no_bias, ["2 classes split at x = 2.5"], "no bias column"),
    (majority_class, ["expected: accuracy"], None),
    (bias_of_twos, ["ridge = 30"], None),
    (scored_on_train_as_percentage, ["received: 100.0000"], None),
])
def test_rejects_typical_mistakes(fn, fragments, names, capsys):
    message = assert_rejects(check_linear_probe_accuracy, fn, *fragments, names=names, capsys=capsys)
    if names is None:  # no mistake is named, and the hint guesses none: it says what is expected
        assert "no bias" not in message and "percentage" not in message


def test_an_exception_in_student_code_names_the_case():
    def broken(train_x, train_y, test_x, test_y, ridge=1e-3):
        raise RuntimeError("shapes do not match")

    message = assert_rejects(check_linear_probe_accuracy, broken, "RuntimeError: shapes do not match",
                             "should return a float", names=None)
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
