"""The robustness suite: one batch of good, bad and hostile submissions, graded by `tutor grade` with 2 workers.

Every case is a submission of the fixture assignment fx1_loss (two exercises: test_token_nll 2
points, test_masked_mean_nll 3 points) built from its release notebook, as a student would hand
it in. The batch is graded once; each case asserts its own row of grades.json. Then the batch is
regraded whole and for one student, and the report must not change.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import sqlite3

import pytest
from grading_support import CELL_TIMEOUT, entries, hidden_lines, load, make_course, points, solved, submit, tutor, untouched

pytestmark = pytest.mark.slow

A = "fx1_loss"
TOKEN, MASKED = "test_token_nll", "test_masked_mean_nll"

TOKEN_WRONG = "def token_nll(logits, targets):\n    return torch.zeros(len(targets))"
MASKED_OWN = '''def masked_mean_nll(logits, targets):
    """Self-contained, so it is right even when token_nll is not."""
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = targets != -100
    log_probs = logits[keep] - logits[keep].logsumexp(dim=-1, keepdim=True)
    return -log_probs.gather(-1, targets[keep].unsqueeze(-1)).mean()'''
TOKEN_NOISY = '''import sys, warnings
print("debugging output on stderr", file=sys.stderr)
warnings.warn("a warning from the student's own cell")

def token_nll(logits, targets):
    print("called token_nll", file=sys.stderr)
    log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)
    return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)'''
SWALLOW = '''while True:
    try:
        while True:
            pass
    except KeyboardInterrupt:
        pass  # the grader's interrupt is swallowed'''


def _tampered_metadata(course):
    nb = solved(course, A, token_nll=TOKEN_WRONG, masked_mean_nll=MASKED_OWN)
    test = next(c for c in nb["cells"] if c["id"] == TOKEN)
    test["metadata"]["nbgrader"].update(grade=False, points=50)
    return nb


def _broken_json(course):
    return json.dumps(solved(course, A))[:-200]


# student -> (submission builder, expected status (prefix), expected points, notes that must appear)
CASES = {
    "alice": (lambda c: solved(c, A), "graded", {TOKEN: 2, MASKED: 3}, []),
    "bob": (lambda c: untouched(c, A), "graded", {TOKEN: 0, MASKED: 0}, []),
    "carol": (lambda c: solved(c, A, token_nll='def token_nll(logits, targets):\n    raise ValueError("not done")\n\n1 / 0',
                                masked_mean_nll=MASKED_OWN), "graded", {TOKEN: 0, MASKED: 3}, []),
    "dave": (lambda c: solved(c, A, token_nll=TOKEN_WRONG, masked_mean_nll=MASKED_OWN,
                              test_token_nll='print("✓ token_nll: all good")  # edited by the student'),
             "graded", {TOKEN: 0, MASKED: 3}, ["restored edited locked cell test_token_nll"]),
    "erin": (lambda c: solved(c, A, test_token_nll=None, masked_mean_nll=None, test_masked_mean_nll=None),
             "graded", {TOKEN: 2, MASKED: 0}, ["restored deleted cell test_token_nll", "restored deleted cell masked_mean_nll",
                                               "restored deleted cell test_masked_mean_nll"]),
    "frank": (lambda c: solved(c, A, masked_mean_nll="while True:\n    pass\n\n" + MASKED_OWN),
              "graded", {TOKEN: 2, MASKED: 0}, []),
    "grace": (lambda c: solved(c, A, masked_mean_nll=SWALLOW),
              f"not graded: cell masked_mean_nll ran past the {CELL_TIMEOUT} s limit and ignored the interrupt", {}, []),
    "heidi": (lambda c: solved(c, A, token_nll="import os\nos._exit(1)"),
              "not graded: the kernel died while running cell token_nll", {}, []),
    "ivan": (_broken_json, "not graded: the file is not valid JSON", {}, []),
    "judy": (lambda c: b"", "not graded: the file is empty", {}, []),
    "ken": (lambda c: solved(c, "fx2_short"), "not graded: this is a notebook of assignment fx2_short, not fx1_loss", {}, []),
    "leo": (lambda c: solved(c, A, demo_train='for i in range(100_000):\n    print(i, "x" * 50)\nprint("y" * 3_000_000)'),
            "graded", {TOKEN: 2, MASKED: 3}, []),
    "mallory": (lambda c: solved(c, A, token_nll=TOKEN_NOISY), "graded", {TOKEN: 2, MASKED: 3}, []),
    "nick": (lambda c: solved(c, A, token_nll=TOKEN_WRONG + "\ntorch.equal = lambda *a, **k: True\n"
                                               "torch.allclose = lambda *a, **k: True", masked_mean_nll=MASKED_OWN),
             "graded", {TOKEN: 0, MASKED: 0}, ["review by hand: cell token_nll changes torch.equal"]),
    "olivia": (lambda c: solved(c, A, token_nll=TOKEN_WRONG + '\ntutor_lib.checks.check_fx_token_nll = '
                                                 'lambda fn: print("✓ token_nll: fine")', masked_mean_nll=MASKED_OWN),
               "graded", {TOKEN: 0, MASKED: 0}, ["review by hand: cell token_nll changes tutor_lib.checks.check_fx_token_nll"]),
    "peggy": (lambda c: solved(c, A, token_nll="from tutor_lib.losses import token_nll",
                               masked_mean_nll="def masked_mean_nll(logits, targets):\n"
                                               "    return tutor_lib.losses.masked_mean_nll(logits, targets)"),
              "graded", {TOKEN: 0, MASKED: 0}, []),
    "trent": (lambda c: solved(c, A, token_nll="import os, signal\nos.kill(os.getppid(), signal.SIGKILL)  # the grader"),
              "not graded: the grading process died while running it", {}, []),
    "uma": (lambda c: solved(c, A, token_nll=TOKEN_WRONG + "\ntutor_lib.checks.check_fx_token_nll.__code__ = "
                                              "(lambda token_nll: None).__code__", masked_mean_nll=MASKED_OWN),
            "graded", {TOKEN: 0, MASKED: 3}, ["review by hand: cell token_nll uses __code__"]),
    "sybil": (_tampered_metadata, "graded", {TOKEN: 0, MASKED: 3}, ["reset the grading metadata of cell test_token_nll"]),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The fixture course with every case submitted, graded once with 2 workers."""
    course = make_course(tmp_path_factory.mktemp("grading") / "course")
    for student, (build, *_) in CASES.items():
        submit(course, student, A, build(course))
    submit(course, "rupert", A, solved(course, A), name="fx1_loss (1).ipynb")  # an LMS-renamed file
    (course / "submitted" / "quinn" / A).mkdir(parents=True)
    (course / "submitted" / "quinn" / A / "notes.txt").write_text("forgot the notebook")
    submit(course, "alice", "fx2_short", solved(course, "fx2_short"))  # with a written answer to grade by hand
    submit(course, "victor", A, solved(course, A))  # with a package that would shadow tutor_lib in the kernel
    (course / "submitted" / "victor" / A / "tutor_lib").mkdir()
    (course / "submitted" / "victor" / A / "tutor_lib" / "__init__.py").write_text("raise SystemExit('shadowed')")
    proc = tutor("grade", "--workers", "2", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return course, proc, (course / "grades.json").read_bytes(), (course / "grades.csv").read_bytes()


@pytest.mark.parametrize("student", sorted(CASES))
def test_case(batch, student):
    course = batch[0]
    _, status, expected, notes = CASES[student]
    entry = entries(course)[(student, A)]
    assert entry["status"].startswith(status), entry
    if status == "graded":
        assert points(entry) == expected, entry
        assert entry["total"] == sum(expected.values()) and entry["max_total"] == 5
        assert (course / "autograded" / student / A / f"{A}.ipynb").exists()
    else:
        assert entry["total"] is None and all(e["points"] is None for e in entry["exercises"]), "never a silent 0"
        assert not (course / "autograded" / student / A).exists()
        page = (course / "feedback" / student / A / f"{A}.html").read_text()
        assert html.escape(entry["status"].removeprefix("not graded: ")) in page
    for note in notes:
        assert note in entry["notes"]


def test_other_outcomes(batch):
    course, proc, *_ = batch
    found = entries(course)
    assert found[("rupert", A)]["status"] == "graded" and found[("rupert", A)]["total"] == 5
    assert "graded fx1_loss (1).ipynb as fx1_loss.ipynb" in found[("rupert", A)]["notes"]
    assert found[("quinn", A)]["status"] == "not graded: no fx1_loss.ipynb in the submission (found: no notebook at all)"
    written = found[("alice", "fx2_short")]
    assert written["status"] == "graded" and points(written) == {"test_double": 1, "why_double": None}
    assert written["needs_manual_grading"] == ["why_double"] and written["total"] == 1 and written["max_total"] == 2
    assert found[("victor", A)]["status"] == "graded" and found[("victor", A)]["total"] == 5  # extra files ignored
    assert len(found) == len(CASES) + 4
    assert f"graded {len(found)} notebooks" in proc.stdout and "not graded" in proc.stdout


def test_huge_output_is_capped(batch):
    course = batch[0]
    autograded = course / "autograded" / "leo" / A / f"{A}.ipynb"
    assert autograded.stat().st_size < 1_000_000
    assert "output truncated by the grader" in autograded.read_text()


def test_quick_mode_for_demo_training(batch):
    autograded = load(batch[0] / "autograded" / "alice" / A / f"{A}.ipynb")
    demo = next(c for c in autograded["cells"] if c["id"] == "demo_train")
    assert "trained for 2 epochs" in "".join("".join(o.get("text", [])) for o in demo["outputs"])


def test_csv_matches_json(batch):
    course = batch[0]
    rows = {(r["student"], r["assignment"]): r for r in csv.DictReader((course / "grades.csv").open())}
    for key, entry in entries(course).items():
        row = rows[key]
        assert row["status"] == entry["status"]
        assert row["total"] == ("" if entry["total"] is None else f"{entry['total']:g}")
        for exercise in entry["exercises"]:
            assert row[exercise["id"]] == ("" if exercise["points"] is None else f"{exercise['points']:g}")
            assert row[f"{exercise['id']}_max"] == f"{exercise['max']:g}"


def test_feedback_shows_visible_results_and_no_hidden_tests(batch):
    course = batch[0]
    secrets = hidden_lines(course)
    assert secrets
    pages = sorted((course / "feedback").glob("*/*/*.html"))
    assert len(pages) == len(entries(course))
    for page in pages:
        text = _visible_text(page)
        assert "BEGIN HIDDEN TESTS" not in text, page
        assert not [s for s in secrets if s in text], page
    bob = _visible_text(course / "feedback" / "bob" / A / f"{A}.html")
    assert "tutor_lib.checks.check_fx_token_nll(token_nll)" in bob  # the visible test
    assert "NotImplementedError" in bob and "Score: 0.0 / 2.0" in bob
    nick = _visible_text(course / "feedback" / "nick" / A / f"{A}.html")
    assert "torch.equal was replaced in this notebook" in nick  # the hidden check's message, not its code


def _visible_text(page) -> str:
    """The page's text as a reader sees it: tags (syntax highlighting) removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_gradebook_matches_report(batch):
    course = batch[0]
    with sqlite3.connect(course / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("""
            SELECT student.id, assignment.name, base_cell.name, grade.auto_score
            FROM grade JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id
            JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id
            JOIN student ON submitted_assignment.student_id = student.id
            JOIN assignment ON submitted_assignment.assignment_id = assignment.id
            JOIN base_cell ON grade.cell_id = base_cell.id""").fetchall()
    stored = {(s, a, cell): score for s, a, cell, score in rows}
    for (student, assignment), entry in entries(course).items():
        for exercise in entry["exercises"]:
            assert stored.get((student, assignment, exercise["id"])) == exercise["points"], (student, exercise)


def test_regrading_gives_the_same_report(batch):
    course, _, first_json, first_csv = batch
    proc = tutor("grade", "--workers", "2", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stderr
    assert (course / "grades.json").read_bytes() == first_json
    assert (course / "grades.csv").read_bytes() == first_csv


def test_regrading_one_student_keeps_the_others(batch):
    course, _, first_json, first_csv = batch
    before = (course / "feedback" / "bob" / A / f"{A}.html").stat().st_mtime_ns
    proc = tutor("grade", "--student", "alice", "--assignment", A, "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stderr
    assert "graded 1 notebooks" in proc.stdout
    assert (course / "grades.json").read_bytes() == first_json
    assert (course / "grades.csv").read_bytes() == first_csv
    assert (course / "feedback" / "bob" / A / f"{A}.html").stat().st_mtime_ns == before


def test_another_gradebook_url(batch):
    course = batch[0]
    other = course.parent / "elsewhere.db"
    proc = tutor("grade", "--student", "bob", "--db", f"sqlite:///{other}", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(other) as db:
        assert db.execute("SELECT id FROM student").fetchall() == [("bob",)]
        assert db.execute("SELECT count(*) FROM grade WHERE auto_score = 0").fetchone() == (2,)
    assert (course / "grades.json").read_bytes() == batch[2]  # the other rows came from the course gradebook


def test_manual_scores_survive_a_regrade(batch):
    from nbgrader.api import Gradebook

    course = batch[0]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.find_grade("why_double", "fx2_short", "fx2_short", "alice").manual_score = 1.0  # as formgrader does
        gb.db.commit()
    proc = tutor("grade", "--student", "alice", "--assignment", "fx2_short", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = entries(course)[("alice", "fx2_short")]
    assert points(entry) == {"test_double": 1, "why_double": 1} and entry["total"] == 2, (entry, proc.stdout)
    assert entry["needs_manual_grading"] == [], entry


def test_whole_notebook_timeout_stops_it_and_leaves_no_process(batch):
    import psutil

    course = batch[0]
    nap = "import time\ntime.sleep(4)  # under the cell limit, but they add up\n"
    submit(course, "walter", A, solved(course, A, token_nll=nap + TOKEN_WRONG, masked_mean_nll=nap + MASKED_OWN,
                                       demo_train=nap))
    proc = tutor("grade", "--student", "walter", "--timeout", "10", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = entries(course)[("walter", A)]
    assert entry["status"] == "not graded: the whole notebook ran longer than 10 s (tutor grade --timeout); it was stopped"
    assert entry["total"] is None
    leftovers = []
    for process in psutil.process_iter(["cmdline"]):  # walter's kernel, or a worker whose run has ended
        try:
            cwd = process.cwd()  # a worker works in its run's temporary folder, deleted when the run ends
            if "/autograded/walter/" in cwd or ("tutor-grade-" in cwd and not os.path.isdir(cwd.removesuffix(" (deleted)"))):
                leftovers.append(process.info["cmdline"])
        except psutil.Error:
            continue
    assert not leftovers, leftovers
