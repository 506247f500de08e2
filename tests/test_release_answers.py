"""No release notebook gives away a hand-graded answer: the reference answers stay in solutions/.

A written answer (a markdown cell with nbgrader `solution` and `grade` set) is graded by hand
against the reference text in the source notebook. If any cell of the release, prose or code,
repeats a run of that reference text, a student can copy the answer instead of earning it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tutor_lib.course import list_assignments

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = list_assignments(ROOT)
# Words: a shared run this long is copied text, not a shared phrase such as "answered color and shape
# questions zero-shot", which an answer may rightly repeat from the notebook's own prose.
RUN = 10


def _cells(kind: str, assignment: str) -> list[dict]:
    return json.loads((ROOT / kind / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"))["cells"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:[.'%-][a-z0-9]+)*%?", text.lower())


def _runs(text: str, n: int = RUN) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _is_written_answer(cell: dict) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell["cell_type"] == "markdown" and bool(meta.get("solution")) and bool(meta.get("grade"))


def _reference_answers(assignment: str) -> dict[str, str]:
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
            for c in _cells("solutions", assignment) if _is_written_answer(c)}


def test_the_run_finder_sees_copied_text_and_ignores_short_phrases():
    answer = "With 60 examples the two-stage recipe gets 97.8% IID against 92.0% for stage 2 only."
    assert _runs(answer) & _runs("Note: with 60 examples the two-stage recipe gets 97.8% IID against 92.0%")
    assert not _runs(answer) & _runs("the two-stage recipe and stage 2 only, with 60 examples")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_holds_no_reference_answer(assignment):
    if not (ROOT / "notebooks" / assignment / f"{assignment}.ipynb").exists():
        pytest.skip(f"{assignment} has no release yet (tests/test_releases.py reports that)")
    answers = _reference_answers(assignment)
    release = _cells("notebooks", assignment)
    released_ids = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]).strip()
                    for c in release if _is_written_answer(c)}
    assert set(released_ids) == set(answers), f"{assignment}: the release lost or gained written-answer cells"
    for grade_id, text in released_ids.items():
        assert text == "YOUR ANSWER HERE", f"{assignment}: the release's answer cell {grade_id} is not empty"
    for grade_id, answer in answers.items():
        reference = _runs(answer)
        for cell in release:
            if _is_written_answer(cell):
                continue
            shared = reference & _runs("".join(cell["source"]))
            assert not shared, (f"{assignment}: release cell {cell.get('id')!r} repeats the reference answer of "
                                f"{grade_id}: {' '.join(sorted(shared)[0])!r}")
