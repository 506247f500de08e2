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


LEAK_PROBE = '''import linecache, sys

def token_nll(logits, targets):
    """Right, but it prints the code of its callers (the hidden tests among them) backwards."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        print("".join(linecache.getline(code.co_filename, n) for n in range(1, 60))[::-1])
        frame = frame.f_back
    log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)
    return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)'''


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
    "xavier": (lambda c: solved(c, A, token_nll=LEAK_PROBE), "graded", {TOKEN: 2, MASKED: 3},
               ["review by hand: cell token_nll uses _getframe", "review by hand: cell token_nll imports linecache"]),
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


def test_huge_output_is_capped_and_keeps_its_first_lines(batch):
    course = batch[0]
    autograded = course / "autograded" / "leo" / A / f"{A}.ipynb"
    assert autograded.stat().st_size < 1_000_000
    demo = next(c for c in load(autograded)["cells"] if c["id"] == "demo_train")
    text = "".join("".join(o.get("text", "")) for o in demo["outputs"])
    assert text.startswith("0 xxxxx") and "\n1 xxxxx" in text, text[:200]  # the first lines, then a truncation note
    assert "Output truncated" in text or "output truncated by the grader" in text
    feedback = _visible_text(course / "feedback" / "leo" / A / f"{A}.html")
    assert "0 xxxxx" in feedback and "truncated" in feedback


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
    assert "graded 1 notebook in" in proc.stdout and "with 1 worker:" in proc.stdout
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


def _needs_manual_grade(course, cell: str, student: str) -> bool:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return gb.find_grade(cell, "fx2_short", "fx2_short", student).needs_manual_grade


def test_manual_scores_survive_a_regrade(batch):
    """The same answers regraded: the manual score stands, and formgrader and grades.csv agree that nothing
    is left to grade. Changed answers: both list the written answer for review again, and a note says why."""
    from nbgrader.api import Gradebook

    course = batch[0]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade("why_double", "fx2_short", "fx2_short", "alice")
        grade.manual_score, grade.needs_manual_grade = 1.0, False  # as formgrader does
        gb.db.commit()
    proc = tutor("grade", "--student", "alice", "--assignment", "fx2_short", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = entries(course)[("alice", "fx2_short")]
    assert points(entry) == {"test_double": 1, "why_double": 1} and entry["total"] == 2, (entry, proc.stdout)
    assert entry["needs_manual_grading"] == [] and entry["notes"] == [], entry
    assert not _needs_manual_grade(course, "why_double", "alice"), "formgrader would list it as needing grading"

    changed = solved(course, "fx2_short")
    answer = next(c for c in changed["cells"] if c["id"] == "why_double")
    answer["source"] = "Because doubling is adding a number to itself, as I now explain differently."
    submit(course, "alice", "fx2_short", changed)
    proc = tutor("grade", "--student", "alice", "--assignment", "fx2_short", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = entries(course)[("alice", "fx2_short")]
    assert points(entry)["why_double"] == 1 and entry["needs_manual_grading"] == ["why_double"], entry
    assert entry["notes"] == ["the answers changed since they were graded by hand: review why_double in formgrader"]
    assert _needs_manual_grade(course, "why_double", "alice")


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


@pytest.fixture(scope="module")
def two_graders(tmp_path_factory):
    """Two grading machines (course folders with the same submissions) sharing one gradebook in their config."""
    base = tmp_path_factory.mktemp("graders")
    shared = f"sqlite:///{base / 'shared.db'}"
    folders = []
    for name in ("first", "second"):
        folder = make_course(base / name, cell_timeout=120)  # no timeouts tested here
        with (folder / "nbgrader_config.py").open("a") as config:
            config.write(f"\nc.CourseDirectory.db_url = {shared!r}\n")  # one setting for formgrader and tutor
        submit(folder, "yan", A, solved(folder, A))
        submit(folder, "zoe", A, solved(folder, A, token_nll=TOKEN_WRONG, masked_mean_nll=MASKED_OWN))
        folders.append(folder)
    return base, shared, folders


def test_several_graders_sharing_one_gradebook(two_graders):
    base, shared, (first, second) = two_graders
    for folder, student in ((first, "yan"), (second, "zoe")):
        proc = tutor("grade", "--student", student, "--no-progress", cwd=folder)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for folder in (first, second):  # the gradebook.db of make_course's release got no grades
        with sqlite3.connect(folder / "gradebook.db") as db:
            assert db.execute("SELECT count(*) FROM submitted_assignment").fetchone() == (0,)
    expected = {("yan", A): 5, ("zoe", A): 3}
    # Each folder's report shows the other grader's student as graded, from the gradebook.
    assert {k: e["total"] for k, e in entries(second).items()} == expected
    assert entries(second)[("yan", A)]["status"] == "graded"
    proc = tutor("report", "--output", str(base / "merged"), cwd=first)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 submissions of 2 students: 2 graded, 0 not graded" in proc.stdout
    merged = {(e["student"], e["assignment"]): e for e in load(base / "merged" / "grades.json")["grades"]}
    assert {k: e["total"] for k, e in merged.items()} == expected
    assert points(merged[("zoe", A)]) == {TOKEN: 0, MASKED: 3}


def test_late_submissions_get_nbgrader_penalties(two_graders):
    """tutor collect's timestamp.txt against a due date set in the gradebook (as formgrader does)."""
    import datetime as dt

    from nbgrader.api import Gradebook

    base, shared, (first, _) = two_graders
    with Gradebook(shared) as gb:
        gb.update_or_create_assignment(A, duedate=dt.datetime(2026, 1, 1, 12, 0))
    with (first / "nbgrader_config.py").open("a") as config:
        config.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    for student, when in (("early", "2026-01-01 11:00:00 UTC"), ("late", "2026-01-02 18:00:00 UTC")):
        submit(first, student, A, solved(first, A))
        (first / "submitted" / student / A / "timestamp.txt").write_text(when + "\n")
    (first / "submitted" / "late" / A / "lms-late").write_text("late_LATE_1_fx1_loss.ipynb\n")
    proc = tutor("grade", "--student", "early", "--student", "late", "--no-progress", cwd=first)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    early, late = entries(first)[("early", A)], entries(first)[("late", A)]
    assert early["total"] == 5 and early["late_penalty"] == 0 and early["notes"] == [], early
    assert late["total"] == 0 and late["late_penalty"] == 5, late
    assert late["notes"] == ["submitted 30.0 h after the due date (late penalty 5)", "the LMS marked it LATE"], late
