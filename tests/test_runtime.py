"""tutor_lib.runtime: quick mode (the grader's and Validate's), CPU threads, and timeouts made visible."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from tutor_lib import runtime


@pytest.mark.parametrize("quick, execution, expected", [
    ("", "", False),
    ("1", "", True),
    ("true", "", True),
    ("0", "", False),
    ("", "validate", True),     # nbgrader's Validate button
    ("", "autograde", True),    # tutor grade / nbgrader autograde
    ("0", "validate", False),   # an explicit TUTOR_QUICK wins
    ("", "something", False),
])
def test_quick_mode(monkeypatch, quick, execution, expected):
    monkeypatch.setenv("TUTOR_QUICK", quick)
    monkeypatch.setenv("NBGRADER_EXECUTION", execution)
    assert runtime.quick_mode() is expected
    assert runtime.epochs(30) == (2 if expected else 30)
    assert runtime.epochs(1) == 1


def test_threads_default_env_and_argument(monkeypatch):
    monkeypatch.delenv("TUTOR_THREADS", raising=False)
    assert runtime.cpu_threads_wanted() == runtime.DEFAULT_THREADS == 1
    monkeypatch.setenv("TUTOR_THREADS", " 3 ")
    assert runtime.cpu_threads_wanted() == 3
    assert runtime.cpu_threads_wanted(2) == 2  # the argument wins


@pytest.mark.parametrize("env, arg, message", [
    ("two", None, "TUTOR_THREADS must be a whole number of CPU threads, got 'two'"),
    ("0", None, "threads must be a whole number >= 1, got 0"),
    ("", 0, ">= 1, got 0"),
    ("", 1.5, ">= 1, got 1.5"),
    ("", True, ">= 1, got True"),
])
def test_bad_thread_counts_are_rejected(monkeypatch, env, arg, message):
    monkeypatch.setenv("TUTOR_THREADS", env)
    with pytest.raises(ValueError, match=message):
        runtime.cpu_threads_wanted(arg)


def test_setup_sets_threads_and_says_so(monkeypatch, capsys):
    monkeypatch.delenv("TUTOR_THREADS", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("TUTOR_QUICK", "")
    old = torch.get_num_threads()
    try:
        device = runtime.setup(seed=3, device="cpu")
        assert device == torch.device("cpu") and torch.get_num_threads() == 1
        assert capsys.readouterr().out == f"PyTorch {torch.__version__} on cpu, 1 CPU thread, seed 3\n"
        monkeypatch.setenv("TUTOR_QUICK", "1")
        runtime.setup(seed=3, device="cpu", threads=2)
        assert torch.get_num_threads() == 2
        assert capsys.readouterr().out.endswith("2 CPU threads, seed 3, quick mode (demo training shortened)\n")
    finally:
        torch.set_num_threads(old)


def test_a_stopped_cell_fails_every_later_cell_with_a_clear_message():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        assert runtime.watch_for_timeouts(shell) and runtime.watch_for_timeouts(shell)  # idempotent
        assert shell.run_cell("x = 1").success and shell.user_ns["x"] == 1
        assert not shell.run_cell("# a demo\nmodel = 'trained'\nraise KeyboardInterrupt").success
        for source in ("y = 2", "print('later')"):
            result = shell.run_cell(source)
            assert isinstance(result.error_in_exec, runtime.CellTimedOut)
            assert re.match(r"cell \[1\], which starts `model = 'trained'`, was stopped after \d+ s, at the time limit",
                            str(result.error_in_exec))
        assert "y" not in shell.user_ns
    finally:
        InteractiveShell.clear_instance()


def test_watch_for_timeouts_outside_ipython_does_nothing():
    assert runtime.watch_for_timeouts() is False


def _notebook(cells: list[tuple[str, str | None]]) -> dict:
    out = []
    for i, (source, grade_id) in enumerate(cells):
        meta = {}
        if grade_id:
            meta = {"nbgrader": {"grade": True, "grade_id": grade_id, "locked": True, "points": 1, "schema_version": 3,
                                 "solution": False, "task": False}}
        out.append({"cell_type": "code", "id": f"c{i}", "metadata": meta, "source": source, "outputs": [],
                    "execution_count": None})
    return {"cells": out, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.slow
def test_validate_runs_quick_and_reports_a_cell_stopped_at_the_limit(tmp_path):
    """nbgrader validate (what the Validate button runs): quick mode on, and a demo cell stopped at the
    per-cell limit shows up in the report instead of passing silently."""
    nbgrader = shutil.which("nbgrader", path=os.path.dirname(sys.executable))
    if nbgrader is None:
        pytest.skip("nbgrader is not installed in this environment")
    cells = [
        ("import tutor_lib\ndevice = tutor_lib.setup(seed=0)", None),
        ("from tutor_lib.runtime import quick_mode\nassert quick_mode(), 'Validate should run in quick mode'", "test_quick"),
        ("import time\ntime.sleep(600)  # a demo cell that runs too long", None),
        ("assert True", "test_after"),
    ]
    (tmp_path / "nb.ipynb").write_text(json.dumps(_notebook(cells)))
    env = {k: v for k, v in os.environ.items() if k not in ("TUTOR_QUICK", "NBGRADER_EXECUTION")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    out = subprocess.run([nbgrader, "validate", "nb.ipynb", "--Execute.timeout=40"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    report = out.stdout + out.stderr
    assert "VALIDATION FAILED ON 1 CELL(S)" in report, report
    assert "assert True" in report and "CellTimedOut: cell [3], which starts `import time`, was stopped after" in report, report
    assert "Validate should run in quick mode" not in report, report
