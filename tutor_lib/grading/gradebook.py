"""nbgrader in this process, and the gradebook: templates, recording assignments, merging results, scores.

Workers never write the course gradebook. Each autogrades into a private copy of a template
gradebook; the parent process alone merges their results into the course gradebook (SQLite by
default, any SQLAlchemy URL with --db), one submission at a time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from sqlalchemy.exc import SAWarning
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader


def default_db_url(root: Path) -> str:
    """The course's own gradebook: SQLite in the course folder."""
    return f"sqlite:///{Path(root).resolve() / 'gradebook.db'}"


def use_venv_path() -> None:
    """Put this Python's bin folder first on PATH: nbgrader runs alembic when it creates a gradebook."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def load_config(config_file: Path, root: Path, db_url: str, **sections: dict) -> Config:
    """The course's nbgrader_config.py with the course root and gradebook replaced (and any extra sections)."""
    config = PyFileConfigLoader(Path(config_file).name, path=str(Path(config_file).parent)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url
    for section, values in sections.items():
        for key, value in values.items():
            setattr(config[section], key, value)
    return config


def make_api(config: Config) -> NbGraderAPI:
    """An in-process nbgrader (no interpreter start per command) configured by `config`."""
    use_venv_path()
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def api_error(result: dict) -> str:
    """The most telling line of a failed nbgrader API call: the last exception or error message."""
    lines = [line.strip() for line in ((result.get("error") or "") + "\n" + (result.get("log") or "")).splitlines()]
    exceptions = [line for line in lines if line and ("Error:" in line or "Exception:" in line)]
    errors = [line[len("[ERROR]"):].strip() for line in lines if line.startswith("[ERROR]")
              and "There was an error processing" not in line and "Please see" not in line]
    return (exceptions or errors or ["nbgrader failed without a message"])[-1][:300]


@contextlib.contextmanager
def open_gradebook(db_url: str, course_id: str = "") -> Iterator[Gradebook]:
    """A Gradebook session (nbgrader creates the tables of a new database)."""
    use_venv_path()
    with Gradebook(db_url, course_id) as gb:
        yield gb


def cell_signature(db_url: str, assignment: str) -> dict | None:
    """What a gradebook knows of an assignment: {notebook: (grade cells, source cells)}; None if absent."""
    with open_gradebook(db_url) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return None
        return {nb.name: ({c.name: (c.max_score, c.cell_type) for c in nb.grade_cells},
                          {c.name: (c.locked, c.checksum, c.cell_type) for c in nb.source_cells})
                for nb in found.notebooks}


def grade_ids_in_order(release_nb) -> list[str]:
    """grade_ids of a notebook's graded cells (tests and written answers), in notebook order."""
    return [cell.metadata["nbgrader"]["grade_id"] for cell in release_nb.cells
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade")]


def read_autogrades(db_url: str, assignment: str, student: str) -> dict:
    """A worker's results from its private gradebook: every grade and comment of the submission."""
    with open_gradebook(db_url) as gb:
        submission = gb.find_submission(assignment, student)
        result = {"grades": [], "comments": [], "penalties": {}}
        for nb in submission.notebooks:
            result["penalties"][nb.name] = nb.late_submission_penalty
            for grade in nb.grades:
                result["grades"].append({"notebook": nb.name, "id": grade.name, "auto_score": grade.auto_score,
                                         "max": grade.max_score, "needs_manual_grade": grade.needs_manual_grade,
                                         "written": grade.cell.cell_type == "markdown"})
            for comment in nb.comments:
                result["comments"].append({"notebook": nb.name, "id": comment.name, "auto_comment": comment.auto_comment})
        return result


def merge_result(gb: Gradebook, assignment: str, student: str, result: dict | None) -> None:
    """Write one worker's autogrades into the course gradebook (None: the submission could not be graded).

    Only automatic scores are written: a grader's manual scores and comments survive a regrade.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission trips SQLAlchemy's autoflush warning
        _merge(gb, assignment, student, result)


def _merge(gb: Gradebook, assignment: str, student: str, result: dict | None) -> None:
    gb.update_or_create_student(student)
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        if result is None:
            return
        submission = gb.add_submission(assignment, student)
    if result is None:
        for nb in submission.notebooks:
            for grade in nb.grades:
                grade.auto_score, grade.needs_manual_grade = None, True
        gb.db.commit()
        return
    for item in result["grades"]:
        grade = gb.find_grade(item["id"], item["notebook"], assignment, student)
        grade.auto_score = item["auto_score"]
        grade.needs_manual_grade = bool(item["needs_manual_grade"] or grade.manual_score is not None)
    for item in result["comments"]:
        gb.find_comment(item["id"], item["notebook"], assignment, student).auto_comment = item["auto_comment"]
    for nb in submission.notebooks:
        nb.late_submission_penalty = result["penalties"].get(nb.name)
    gb.db.commit()


def read_scores(gb: Gradebook, assignment: str, student: str) -> dict[str, dict] | None:
    """{grade_id: {"points", "max", "written"}} of a submission; points is a manual score where one was given."""
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return None
    scores = {}
    for nb in submission.notebooks:
        for grade in nb.grades:
            extra = grade.extra_credit or 0.0
            points = grade.manual_score if grade.manual_score is not None else grade.auto_score
            scores[grade.name] = {"points": None if points is None else points + extra, "max": grade.max_score,
                                  "written": grade.cell.cell_type == "markdown"}
    return scores
