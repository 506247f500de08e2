"""What every check shares: a failure shows the student its message alone, and a check runs on one thread.

A failed check shows its message (case, expected, received, hint) and no traceback. IPython
formats an exception through its `_render_traceback_` when it has one; what that returns is the
`traceback` of the error output, which JupyterLab shows, nbgrader's Validate prints and the
grader's feedback HTML renders.
"""

from __future__ import annotations

import re

import nbformat
import pytest
import torch

import tutor_lib.checks as checks
import tutor_lib.losses
from tutor_lib.checks import CheckError

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _failure(fn) -> CheckError:
    with pytest.raises(CheckError) as info:
        checks.check_token_nll(fn)
    return info.value


def _stub(logits, targets):
    raise NotImplementedError()


def _off_by_one(logits, targets):
    return -logits.log_softmax(-1)[:, 0]


def test_a_stub_is_named_as_such_and_not_chained_to_its_error():
    error = _failure(_stub)
    assert "the function is still the stub" in str(error)
    assert error.__suppress_context__ and error.__cause__ is None  # no "During handling of the above exception"


def test_the_rendered_message_is_the_message_alone_in_short_lines():
    error = _failure(_off_by_one)
    lines = error._render_traceback_()
    text = ANSI.sub("", "\n".join(lines))
    assert text.splitlines()[0] == "CheckError"
    for part in ("case:", "expected:", "received:", "hint:"):
        assert part in text
    # nbgrader's Validate (command line) cuts lines at 87 characters, its 4-space indent included.
    assert max(len(ANSI.sub("", line)) for line in lines) <= 84
    # Wrapping loses no word of the message.
    assert " ".join(text.split()[1:]) == " ".join(str(error).split())


def test_the_full_traceback_comes_back_on_request(monkeypatch):
    error = _failure(_off_by_one)
    assert hasattr(error, "_render_traceback_")
    monkeypatch.setenv("TUTOR_CHECK_TRACEBACK", "1")
    assert not hasattr(error, "_render_traceback_")  # IPython then formats its usual traceback


def _cell(source: str, grade_id: str | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": 1,
                                     "schema_version": 3, "solution": False, "task": False}
    return cell


@pytest.mark.slow
def test_validate_shows_only_the_message(tmp_path):
    """nbgrader's Validate runs the notebook in a kernel; each failing cell's error is the message alone."""
    from nbgrader.validator import Validator

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        _cell("import torch\nimport tutor_lib.checks"),
        _cell("def token_nll(logits, targets):\n    raise NotImplementedError()"),
        _cell("tutor_lib.checks.check_token_nll(token_nll)", "test_stub"),
        _cell("def masked_mean_nll(logits, labels, ignore_index=-100):\n    return logits.sum()"),
        _cell("tutor_lib.checks.check_masked_mean_nll(masked_mean_nll)", "test_wrong"),
    ]
    path = tmp_path / "student.ipynb"
    nbformat.write(nb, path)
    failed = Validator().validate(str(path))["failed"]
    assert len(failed) == 2
    for result in failed:
        error = ANSI.sub("", result["raw_error"])
        lines = error.splitlines()
        assert lines[0] == "CheckError", error
        assert len(lines) <= 12, error
        for part in ("case:", "expected:", "received:"):
            assert part in error
        for internal in ("_common.py", "Traceback", "During handling", "site-packages"):
            assert internal not in error
    assert "still the stub" in failed[0]["raw_error"]


def test_a_check_runs_on_one_thread_and_puts_the_setting_back():
    """Tiny tensors gain nothing from threads; on a busy machine extra threads made training checks 5-30x slower."""
    seen = []

    def spy(logits, targets):
        seen.append(torch.get_num_threads())
        return tutor_lib.losses.token_nll(logits, targets)

    def failing(logits, targets):
        seen.append(torch.get_num_threads())
        return _off_by_one(logits, targets)

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        checks.check_token_nll(spy)
        _failure(failing)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
