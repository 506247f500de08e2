"""The grading tools' parts, without kernels: collect, preflight, the stderr allowance, feedback redaction, report, CLI."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
import zipfile
from pathlib import Path

import nbformat
import pytest
from grading_support import FIXTURE, ROOT, make_course
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tutor_lib.cli import main
from tutor_lib.grading.collect import DEFAULT_PATTERN, collect, match_file
from tutor_lib.grading.preflight import NotGradable, check_assignment, prepare, read_submission, restore_cells, suspicious_code
from tutor_lib.grading.report import GRADED, make_entry, write_report

ASSIGNMENTS = ["01_loss", "02_data", "fx1_loss"]


def _release() -> nbformat.NotebookNode:
    """A release-like notebook with a locked setup cell and one exercise (solution + test)."""
    def meta(**kw):
        return {"nbgrader": {"grade": False, "locked": False, "schema_version": 3, "solution": False, "task": False,
                             **kw}}
    nb = new_notebook(cells=[
        new_markdown_cell("# Title", id="intro"),
        new_code_cell("import torch", id="setup", metadata=meta(grade_id="setup", locked=True)),
        new_code_cell("def f(x):\n    raise NotImplementedError()", id="f", metadata=meta(grade_id="f", solution=True)),
        new_code_cell("assert f(1) == 2", id="test_f", metadata=meta(grade_id="test_f", grade=True, locked=True, points=2)),
        new_code_cell("print('demo')", id="demo"),
    ])
    nb.nbformat_minor = 5
    return nb


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# -- collect -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("doejane_12345_678_01_loss.ipynb", ("doejane", "01_loss")),
    ("doejane_LATE_12345_678_02_data-1.ipynb", ("doejane", "02_data")),
    ("sub/folder/smith.j_9_01_loss (2).ipynb", ("smith.j", "01_loss")),
    ("01_loss.ipynb", "no student id in the name: the id found is part of the assignment name (see --pattern)"),
    ("doejane_12345_essay.pdf", "not a notebook (.ipynb)"),
    ("doejane_12345_homework.ipynb", "no single assignment name of the course in the file name"),
    ("Jane Doe_12345_01_loss.ipynb", "no student id in the name (see --pattern)"),
])
def test_default_pattern_reads_lms_file_names(name, expected):
    assert match_file(name, re.compile(DEFAULT_PATTERN), ASSIGNMENTS) == expected


def test_custom_pattern_for_moodle_folders():
    pattern = re.compile(r"_(?P<student>\d+)_assignsubmission_file_/")
    assert match_file("Jane Doe_4711_assignsubmission_file_/01_loss.ipynb", pattern, ASSIGNMENTS) == ("4711", "01_loss")
    named = re.compile(r"^(?P<student>\w+?)--(?P<assignment>[^.]+)\.ipynb$")
    assert match_file("ada--02_data.ipynb", named, ASSIGNMENTS) == ("ada", "02_data")
    assert match_file("ada--03_model.ipynb", named, ASSIGNMENTS) == "assignment '03_model' is not in solutions/"


def test_collect_a_zip_places_notebooks_and_reports_the_rest(tmp_path):
    download = tmp_path / "download.zip"
    with zipfile.ZipFile(download, "w") as archive:
        archive.writestr(zipfile.ZipInfo("doejane_1_2_01_loss.ipynb", (2024, 1, 1, 10, 0, 0)), "old")
        archive.writestr(zipfile.ZipInfo("doejane_1_3_01_loss-1.ipynb", (2024, 1, 2, 10, 0, 0)), "new")
        archive.writestr("roe_7_8_02_data.ipynb", "roe")
        archive.writestr("roe_7_8_notes.txt", "not a notebook")
        archive.writestr("__MACOSX/._roe_7_8_02_data.ipynb", "junk")
    outcome = collect(download, tmp_path / "course", ASSIGNMENTS)
    course = tmp_path / "course"
    assert (course / "submitted/doejane/01_loss/01_loss.ipynb").read_text() == "new"  # the newest file wins
    assert (course / "submitted/roe/02_data/02_data.ipynb").read_text() == "roe"
    assert len(outcome.placed) == 2
    reasons = dict(outcome.unplaced)
    assert reasons["doejane_1_2_01_loss.ipynb"] == "an older file of doejane/01_loss; kept doejane_1_3_01_loss-1.ipynb"
    assert reasons["roe_7_8_notes.txt"] == "not a notebook (.ipynb)"
    assert reasons["__MACOSX/._roe_7_8_02_data.ipynb"] == "system or hidden file"


def test_collect_command_on_a_folder(tmp_path, capsys):
    course = tmp_path / "course"
    _write(course / "nbgrader_config.py", "")
    _write(course / "solutions/01_loss/01_loss.ipynb", "{}")
    _write(tmp_path / "dl/ada_1_01_loss.ipynb", "{}")
    _write(tmp_path / "dl/bob_2_01_loss.ipynb", "{}")
    _write(tmp_path / "dl/readme.txt", "")
    assert main(["collect", str(tmp_path / "dl"), "--course-dir", str(course)]) == 0
    out = capsys.readouterr().out
    assert "placed 2 notebooks of 2 students" in out and "readme.txt: not a notebook" in out
    assert sorted(p.parent.parent.name for p in course.glob("submitted/*/01_loss/01_loss.ipynb")) == ["ada", "bob"]
    assert main(["collect", str(tmp_path / "missing.zip"), "--course-dir", str(course)]) == 2
    assert main(["collect", str(tmp_path / "dl"), "--pattern", "(?P<nobody>x)", "--course-dir", str(course)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tutor collect: error: {tmp_path / 'missing.zip'} does not exist",
                   "tutor collect: error: the pattern needs a named group (?P<student>...)"]


# -- preflight ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty (0 bytes)"),
    (b"  \n", "the file holds only whitespace"),
    (b"\xff\xfe\x00binary", "the file is not text (not UTF-8): not a Jupyter notebook"),
    (b'{"cells": [', "the file is not valid JSON (Expecting value at line 1, column 12)"),
    (b'["a", "list"]', "the file is JSON but not a Jupyter notebook (no cells)"),
    (b'{"cells": "many", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "the notebook's structure is invalid"),
    (b'{"cells": [1, 2], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "the notebook's structure is invalid"),
    (b'{"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 9, "nbformat_minor": 0}', "the notebook's structure"),
])
def test_unreadable_submissions_say_why(tmp_path, content, reason):
    with pytest.raises(NotGradable) as caught:
        read_submission(_write(tmp_path / "x.ipynb", content))
    assert str(caught.value).startswith(reason)


def test_common_editor_damage_is_repaired(tmp_path):
    nb = json.loads(nbformat.writes(_release()))
    del nb["cells"][2]["outputs"]  # a code cell without outputs
    nb["cells"][3]["id"] = nb["cells"][2]["id"]  # a duplicate id
    read = read_submission(_write(tmp_path / "x.ipynb", json.dumps(nb)))
    assert read.cells[2].outputs == [] and len({c.id for c in read.cells}) == len(read.cells)
    nbformat.validate(read)


def test_deleted_cells_are_restored_in_place():
    release = _release()
    nb = _release()
    del nb.cells[2:4]  # the student deleted the solution and the test cell
    notes = restore_cells(nb, release)
    assert [c.id for c in nb.cells] == ["intro", "setup", "f", "test_f", "demo"]
    assert notes == ["restored deleted cell f", "restored deleted cell test_f"]
    nbformat.validate(nb)


def test_grading_metadata_and_locked_edits_are_reported():
    release, nb = _release(), _release()
    nb.cells[3].metadata.nbgrader.update(grade=False, points=100)
    nb.cells[3].source = "pass"
    nb.cells[2].metadata.nbgrader["checksum"] = "whatever"  # bookkeeping, not a change of role
    assert restore_cells(nb, release) == ["reset the grading metadata of cell test_f", "restored edited locked cell test_f"]
    assert nb.cells[3].metadata.nbgrader == release.cells[3].metadata.nbgrader


def test_a_notebook_of_another_assignment_is_recognised(tmp_path):
    release = _release()
    other = _release()
    for cell in other.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata.nbgrader["grade_id"] = "other_" + cell.metadata.nbgrader["grade_id"]
    with pytest.raises(NotGradable, match="this is a notebook of assignment 02_data, not 01_loss"):
        check_assignment(other, "01_loss", release, {"02_data": {"other_f", "other_test_f"}})
    with pytest.raises(NotGradable, match="has none of 01_loss's exercise cells"):
        check_assignment(new_notebook(cells=[new_code_cell("1")]), "01_loss", release, {})
    path = _write(tmp_path / "in.ipynb", nbformat.writes(_release()))
    assert prepare(path, tmp_path / "out" / "01_loss.ipynb", "01_loss", release, {}) == []


def test_code_that_tampers_with_the_checks_is_flagged():
    nb = _release()
    nb.cells[1].source = "import torch\nimport torch.nn.functional as F\nfrom tutor_lib.checks import _common as c"
    nb.cells[2].source = ("torch.equal = lambda *a: True\nF.cross_entropy = None\nsetattr(c, 'fail', print)\n"
                          "f.__code__ = g.__code__\nmodel.weight = None\nx = {}\nx['a'] = 1\n%timeit f(1)")
    nb.cells[4].source = "def broken(:"
    assert suspicious_code(nb) == ["review by hand: cell f changes torch.equal", "review by hand: cell f changes F.cross_entropy",
                                   "review by hand: cell f calls setattr on c", "review by hand: cell f uses __code__"]
    assert suspicious_code(_release()) == []


# -- nbgrader configuration: stderr allowance and feedback --------------------------------------------

def _config():
    from tutor_lib.course import load_config

    return load_config(ROOT, "sqlite://")


LIBRARY_WARNING = ("/usr/lib/python3/site-packages/torch/nn/modules/module.py:1234: UserWarning: "
                   "this will change in a future release\n  warnings.warn(\n")


@pytest.mark.parametrize("stderr, allowed", [
    (LIBRARY_WARNING, True),
    (LIBRARY_WARNING * 2, True),
    ("/venv/lib/python3.11/dist-packages/numpy/core.py:9: DeprecationWarning: old\n", True),
    ("/tmp/ipykernel_123/456.py:3: UserWarning: a warning from the student's own code\n  warnings.warn(\n", False),
    ("Traceback (most recent call last):\n", False),
    (LIBRARY_WARNING + "and then something else\n", False),
    ("loss 0.5\n", False),
])
def test_only_library_warnings_may_write_to_stderr(stderr, allowed):
    from nbgrader.preprocessors import IgnorePattern

    cell = new_code_cell("x", outputs=[new_output("stream", name="stderr", text=stderr)])
    ignore = IgnorePattern(config=_config())
    assert ignore.enabled
    cell, _ = ignore.preprocess_cell(cell, {}, 0)
    assert (cell.outputs == []) is allowed


def test_limits_are_configured():
    config = _config()
    assert config.Execute.timeout == config.ExecutePreprocessor.timeout > 0
    assert "add_missing_cells" not in config.OverwriteCells  # preflight.restore_cells puts deleted cells back
    assert config.LimitOutput.max_lines > 0 and config.GuardedExecute.max_output_chars > 0
    assert "tutor_lib.grading.preprocessors.HideHiddenTests" in config.GenerateFeedback.preprocessors


def test_feedback_hides_hidden_tests_everywhere():
    from tutor_lib.grading.preprocessors import HideHiddenTests

    secret = "assert secret_function(12345) == 67890"
    grade = {"nbgrader": {"grade": True, "grade_id": "test_f", "locked": True, "points": 1, "schema_version": 3,
                          "solution": False, "task": False}}
    test = new_code_cell(f"check(f)\n### BEGIN HIDDEN TESTS\n{secret}\n### END HIDDEN TESTS", metadata=grade, outputs=[
        new_output("error", ename="AssertionError", evalue="case 3 failed",
                   traceback=["Traceback", f"----> 3 {secret}", "AssertionError: case 3 failed"])])
    snoop = new_code_cell("print(In)", outputs=[new_output("stream", name="stdout", text=f"['', 'check(f)\\n{secret}']")])
    visible = new_code_cell("check(g)", outputs=[new_output("error", ename="ValueError", evalue="bad",
                                                              traceback=["Traceback", "----> 1 check(g)", "ValueError: bad"])])
    nb, _ = HideHiddenTests().preprocess(new_notebook(cells=[test, snoop, visible]), {})
    text = json.dumps(nb)
    assert "secret_function" not in text and "BEGIN HIDDEN" not in text
    assert nb.cells[0].source == "check(f)\n# (hidden tests: not shown)"
    assert nb.cells[0].outputs[0].evalue == "case 3 failed"  # the student still learns what failed
    assert nb.cells[1].outputs[0].text == "[output hidden: it quotes hidden test code]\n"
    assert nb.cells[2].outputs[0].traceback[1] == "----> 1 check(g)"  # a cell without hidden tests is left alone


# -- report ------------------------------------------------------------------------------------------

def test_a_submission_not_graded_has_no_points_not_zero(tmp_path):
    maxima = {"test_a": {"points": None, "max": 2.0, "written": False}, "q": {"points": None, "max": 1.0, "written": True}}
    graded = make_entry("ada", "01_loss", GRADED, {"test_a": {"points": 2.0, "max": 2.0, "written": False},
                                                    "q": {"points": None, "max": 1.0, "written": True}}, ["test_a", "q"], [])
    failed = make_entry("bob", "01_loss", "not graded: the file is empty (0 bytes)", maxima, ["test_a", "q"], [])
    assert graded["total"] == 2 and graded["max_total"] == 3 and graded["needs_manual_grading"] == ["q"]
    assert failed["total"] is None and [e["points"] for e in failed["exercises"]] == [None, None]
    csv_path, json_path = write_report(tmp_path, [failed, graded], "course")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["student"] for r in rows] == ["ada", "bob"]
    assert rows[1]["total"] == "" and rows[1]["test_a"] == "" and rows[1]["test_a_max"] == "2"
    assert rows[0]["total"] == "2" and rows[0]["q"] == "" and rows[0]["needs_manual_grading"] == "q"
    assert json.loads(json_path.read_text())["grades"][1]["status"] == "not graded: the file is empty (0 bytes)"


# -- tutor grade: errors before grading ---------------------------------------------------------------

def test_grade_errors_are_one_line(tmp_path, capsys):
    course = tmp_path / "course"
    _write(course / "nbgrader_config.py", (ROOT / "nbgrader_config.py").read_text())
    _write(course / "solutions/fx1_loss/fx1_loss.ipynb", (FIXTURE / "solutions/fx1_loss/fx1_loss.ipynb").read_text())
    assert main(["grade", "--course-dir", str(course)]) == 2
    (course / "submitted" / "ada" / "fx1_loss").mkdir(parents=True)
    assert main(["grade", "--assignment", "nope", "--course-dir", str(course)]) == 2
    assert main(["grade", "--student", "zed", "--course-dir", str(course)]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["grade", "--workers", "0", "--course-dir", str(course)])
    assert usage.value.code == 2
    fcntl = pytest.importorskip("fcntl")
    with (course / ".nbgrader.log").open("ab") as other_run:  # as a second `tutor grade` would find it
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["grade", "--course-dir", str(course)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("tutor grade: error: no submitted/ folder in")
    assert err[1] == "tutor grade: error: unknown assignment 'nope' (solutions/ has: fx1_loss)"
    assert err[2] == "tutor grade: error: no submissions of student 'zed' in submitted/ (for the chosen assignments)"
    assert err[3].startswith("tutor grade: error: argument --workers: expected a number >= 1")
    assert err[4] == f"tutor grade: error: another tutor grade is running in {course}; wait for it to finish"


@pytest.mark.slow
def test_release_twice_changes_nothing(tmp_path):
    course = make_course(tmp_path / "course")  # recorded in gradebook.db

    def snapshot():
        with sqlite3.connect(course / "gradebook.db") as db:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            rows = {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in tables}
        return rows, {p.name: p.read_bytes() for p in course.glob("notebooks/*/*")}

    # The first `tutor release` also writes the Colab setup cell into solutions/ (make_course's release does not).
    assert main(["release", "--course-dir", str(course)]) == 0
    first = snapshot()
    assert first[0]["assignment"] and first[0]["grade_cells"]
    assert main(["release", "--course-dir", str(course)]) == 0
    assert snapshot() == first


def test_release_without_gradebook_touches_no_gradebook(tmp_path):
    from tutor_lib.course import generate_releases

    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    shutil.copytree(FIXTURE / "solutions", course / "solutions")
    written = generate_releases(course, release_dir=tmp_path / "out")
    assert sorted(p.name for p in written) == ["fx1_loss.ipynb", "fx2_short.ipynb"]
    assert not list(course.rglob("*.db")) and not list(tmp_path.rglob("gradebook.db"))


# A stand-in for the grading process: each line on stdin names a job file that says what to do; "family"
# starts a child that would outlive it. Each process records its pid when it starts.
FAKE_WORKER = """
import os, subprocess, sys, time
for line in sys.stdin:
    job = open(line.strip()).read()
    with open(os.path.join(os.path.dirname(line.strip()), "pids"), "a") as pids:
        pids.write(f"{os.getpid()}\\n")
    if job == "family":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(60)
    elif job == "crash":
        sys.exit(3)
    print("done", flush=True)
"""


def test_grading_processes_done_crashed_timed_out_and_stopped(tmp_path, monkeypatch):
    import sys
    import time

    import psutil

    from tutor_lib.grading import pool

    def sleepers():
        return [p for p in psutil.process_iter(["cmdline"]) if "import time; time.sleep(60)" in " ".join(p.info["cmdline"] or [])]

    monkeypatch.setattr(pool, "WORKER", [sys.executable, "-c", FAKE_WORKER])
    done, crash, family = (_write(tmp_path / f"{what}.job", what) for what in ("done", "crash", "family"))
    started = time.monotonic()
    with (tmp_path / "log").open("ab") as log:
        outcomes = list(pool.run_jobs([done, done, crash, done, family, done], workers=1, timeout=3, log=log))
    assert outcomes == [(0, "done"), (1, "done"), (2, "crashed"), (3, "done"), (4, "timeout"), (5, "done")]
    assert time.monotonic() - started < 30
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == 6 and len(set(pids)) == 3, "one process serves job after job until it crashes or is killed"
    assert not sleepers(), "the timed-out job's child was not killed"

    # Ctrl-C while jobs run: every running grading process and its children die.
    deadline = time.monotonic() + 30

    def interrupted_wait(*args, **kwargs):
        while len(sleepers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        raise KeyboardInterrupt

    monkeypatch.setattr(pool, "wait", interrupted_wait)
    with (tmp_path / "log").open("ab") as log, pytest.raises(KeyboardInterrupt):
        list(pool.run_jobs([family, family], workers=2, timeout=60, log=log))
    assert time.monotonic() < deadline, "the jobs never started"
    time.sleep(0.5)
    assert not sleepers()


class _FlakyKernelStart:
    """nbgrader's Execute.preprocess, failing as a kernel that died while starting for the first `failures` calls."""

    def __init__(self, failures: int, error: str = "Kernel died before replying to kernel_info"):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, processor, nb, resources=None, km=None):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(self.error)
        return nb, resources


def test_a_kernel_that_dies_while_starting_is_tried_again(monkeypatch):
    from nbgrader.preprocessors import Execute

    from tutor_lib.grading.preprocessors import GuardedExecute

    tries = GuardedExecute().kernel_start_tries
    for failures, error, calls, succeeds in [
        (1, "Kernel died before replying to kernel_info", 2, True),
        (99, "Kernel died before replying to kernel_info", tries, False),  # bounded, then reported
        (1, "something else went wrong", 1, False),  # other failures are not retried
    ]:
        fake = _FlakyKernelStart(failures, error)
        monkeypatch.setattr(Execute, "preprocess", lambda self, nb, resources=None, km=None, fake=fake: fake(self, nb, resources))
        nb = new_notebook()
        if succeeds:
            assert GuardedExecute().preprocess(nb, {})[0] is nb
        else:
            with pytest.raises(RuntimeError, match=error):
                GuardedExecute().preprocess(nb, {})
        assert fake.calls == calls, (error, fake.calls)


# -- the gradebook: which one, and one line when it cannot be opened -----------------------------------

@pytest.mark.parametrize("url, message", [
    ("not a url", "is not a database URL"),
    ("sqlite:////nonexistent-folder/sub/gradebook.db", "unable to open database file"),
    ("postgresql+pg8000://grader@localhost/llava", "its database driver pg8000 is not installed"),
    ("nosuchdb://grader@localhost/llava", "Can't load plugin"),
    ("postgresql://grader@127.0.0.1:1/llava", "127.0.0.1"),  # nothing listens on port 1
    ("postgresql://grader@no-such-host.invalid/llava", "no-such-host.invalid"),
])
def test_an_unreachable_gradebook_is_one_line_and_exit_2(tmp_path, capsys, url, message):
    import time

    course = tmp_path / "course"
    _write(course / "nbgrader_config.py", (ROOT / "nbgrader_config.py").read_text())
    _write(course / "solutions/fx1_loss/fx1_loss.ipynb", (FIXTURE / "solutions/fx1_loss/fx1_loss.ipynb").read_text())
    (course / "submitted" / "ada" / "fx1_loss").mkdir(parents=True)
    for command in (["grade"], ["release"], ["report"]):
        started = time.monotonic()
        assert main([*command, "--db", url, "--course-dir", str(course)]) == 2
        assert time.monotonic() - started < 10, "a short connect timeout, not a long wait"
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"tutor {command[0]}: error:"), err
        assert message in err[0], err
    assert not list(course.rglob("*.ipynb"))[1:], "nothing was released into a gradebook that cannot be opened"


def test_the_configured_gradebook_is_the_default_for_tutor(tmp_path):
    """c.CourseDirectory.db_url in nbgrader_config.py (what formgrader uses) is tutor's gradebook too; --db wins."""
    from tutor_lib.grading.gradebook import resolve_db_url, shown

    course = tmp_path / "course"
    shutil.copytree(FIXTURE / "solutions", course / "solutions")
    config = (ROOT / "nbgrader_config.py").read_text()
    _write(course / "nbgrader_config.py", config)
    assert resolve_db_url(course) == f"sqlite:///{course.resolve() / 'gradebook.db'}"
    shared = tmp_path / "shared.db"
    _write(course / "nbgrader_config.py", config + f"\nc.CourseDirectory.db_url = 'sqlite:///{shared}'\n")
    assert resolve_db_url(course) == f"sqlite:///{shared}"
    assert resolve_db_url(course, "sqlite:///other.db") == "sqlite:///other.db"
    server = resolve_db_url(course, "postgresql://grader:secret@dbhost/llava")
    assert "connect_timeout=5" in server and shown(server) == "postgresql://grader:***@dbhost/llava"
    _write(course / "pyproject.toml", '[project]\nname = "course"\n')  # where tutor release keeps its Colab setting
    assert main(["release", "--course-dir", str(course)]) == 0
    with sqlite3.connect(shared) as db:
        assert sorted(db.execute("SELECT name FROM assignment")) == [("fx1_loss",), ("fx2_short",)]
    assert not (course / "gradebook.db").exists()


# -- collect: upload times and the LMS's LATE marker ----------------------------------------------------

def test_collect_writes_upload_times_and_late_markers(tmp_path, capsys):
    from zoneinfo import ZoneInfo

    download = tmp_path / "download.zip"
    with zipfile.ZipFile(download, "w") as archive:
        archive.writestr(zipfile.ZipInfo("doejane_LATE_12345_678_01_loss.ipynb", (2026, 3, 2, 9, 30, 0)), "{}")
        archive.writestr(zipfile.ZipInfo("roe_7_8_01_loss.ipynb", (2026, 3, 1, 23, 59, 0)), "{}")
    course = tmp_path / "course"
    outcome = collect(download, course, ASSIGNMENTS)
    assert outcome.late == ["doejane_LATE_12345_678_01_loss.ipynb"]
    assert (course / "submitted/doejane/01_loss/timestamp.txt").read_text() == "2026-03-02 09:30:00 UTC\n"
    assert (course / "submitted/doejane/01_loss/lms-late").is_file()
    assert not (course / "submitted/roe/01_loss/lms-late").exists()
    collect(download, course, ASSIGNMENTS, zone=ZoneInfo("Europe/Berlin"))  # zip times are local: 10:30 CET = 09:30 UTC
    assert (course / "submitted/doejane/01_loss/timestamp.txt").read_text() == "2026-03-02 08:30:00 UTC\n"

    from nbgrader.utils import parse_utc

    assert str(parse_utc((course / "submitted/roe/01_loss/timestamp.txt").read_text().strip())) == "2026-03-01 22:59:00"
    _write(course / "nbgrader_config.py", "")
    _write(course / "solutions/01_loss/01_loss.ipynb", "{}")
    assert main(["collect", str(download), "--course-dir", str(course)]) == 0
    assert "placed 2 notebooks of 2 students in submitted/; the LMS marked 1 LATE" in capsys.readouterr().out
    assert main(["collect", str(download), "--zip-timezone", "Mars/Olympus", "--course-dir", str(course)]) == 2
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


# -- output cap and reading the test cells' code ----------------------------------------------------------

def test_a_huge_output_keeps_its_first_lines():
    from tutor_lib.grading.preprocessors import GuardedExecute

    run = GuardedExecute(max_output_chars=1000)
    run.reset_execution_trackers()
    run.clear_before_next_output, run._output_chars = False, {}
    lines = "".join(f"{i} {'x' * 50}\n" for i in range(200_000))
    message = {"msg_type": "stream", "header": {"msg_type": "stream"}, "parent_header": {"msg_id": "m"},
               "content": {"name": "stdout", "text": lines}}
    outs = []
    for _ in range(3):
        run.output(outs, message, None, 0)
    assert len(outs) == 2, "the first lines that fit, then one notice"
    assert outs[0].text.startswith("0 xxx") and outs[0].text.endswith("\n") and len(outs[0].text) <= 1000
    assert outs[0].text.count("\n") == 1000 // 53
    assert "output truncated by the grader: more than 1000 characters" in outs[1].text


def test_code_that_reads_the_test_cells_is_flagged():
    nb = _release()
    nb.cells[2].source = ("import sys, linecache\ndef f(x):\n    frame = sys._getframe(1)\n"
                          "    print(linecache.getline(frame.f_code.co_filename, 1)[::-1])\n    return 2 * x")
    nb.cells[4].source = "print(In[-2][::-1])\nimport inspect\nget_ipython().user_ns['_ih']"
    notes = suspicious_code(nb)
    assert sorted(notes) == sorted(["review by hand: cell f imports linecache", "review by hand: cell f uses _getframe",
                                    "review by hand: cell f uses f_code", "review by hand: cell demo imports inspect",
                                    "review by hand: cell demo uses user_ns", "review by hand: cell demo names '_ih'",
                                    "review by hand: cell demo reads In (the cells' source)"]), notes


def test_only_the_answers_that_changed_are_reviewed_again(tmp_path):
    """A changed written answer flags itself only; a changed code cell flags every code grade (tests depend on it)."""
    import nbformat

    from tutor_lib.grading.runner import _changed

    def notebook(folder, why_a: str, why_b: str, code: str):
        cells = [nbformat.v4.new_markdown_cell(why_a, id="why_a"), nbformat.v4.new_markdown_cell(why_b, id="why_b"),
                 nbformat.v4.new_code_cell(code, id="double"), nbformat.v4.new_code_cell("check(double)", id="test_double")]
        for cell in cells:
            cell.metadata["nbgrader"] = {"grade_id": cell.id}
        path = folder / "autograded" / "ann" / "hw" / "hw.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(cells=cells), path)

    graded, regraded = tmp_path / "course", tmp_path / "run"
    job = {"student": "ann", "assignment": "hw", "course": str(regraded)}
    assert _changed(graded, job) is None  # never graded here: every manual score is reviewed again
    notebook(graded, "Because.", "Since.", "def double(x): return 2 * x")
    notebook(regraded, "Because, as I now say.", "Since.", "def double(x): return 2 * x")
    assert _changed(graded, job) == {"why_a"}
    (regraded / "autograded").rename(tmp_path / "old")
    notebook(regraded, "Because.", "Since.", "def double(x): return x + x")
    assert _changed(graded, job) == {"double", "test_double"}
