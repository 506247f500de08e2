"""The course's own notebooks under `tutor grade`: a solved notebook earns every autograded point.

nbval runs the solutions too, but it ignores stderr, which nbgrader scores as a failed test; this is
the check that grading agrees with nbval. (That an untouched release fails every test is checked by
tests/test_releases.py; that it is reported as "graded" with 0 points, on the fixture, by test_grading.py.)"""

from __future__ import annotations

import pytest
from grading_support import ROOT, entries, make_course, solved, submit, tutor

from tutor_lib.course import list_assignments

ASSIGNMENTS = list_assignments(ROOT)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("course") / "course", solutions=ROOT / "solutions",
                         assignments=ASSIGNMENTS, cell_timeout=120)
    for assignment in ASSIGNMENTS:
        submit(course, "solved", assignment, solved(course, assignment))
    proc = tutor("grade", "--workers", "2", "--no-progress", cwd=course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return entries(course)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_earns_every_autograded_point(graded, assignment):
    entry = graded[("solved", assignment)]
    assert entry["status"] == "graded", entry
    lost = {e["id"]: e["points"] for e in entry["exercises"] if not e["written"] and e["points"] != e["max"]}
    assert not lost, f"test cells that fail under nbgrader (stderr output counts as a failure): {lost}"
    assert entry["needs_manual_grading"] == [e["id"] for e in entry["exercises"] if e["written"]]
