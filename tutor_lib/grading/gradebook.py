"""The gradebook: which one, opening it, templates, merging results, scores.

Workers never write the course gradebook. Each autogrades into a private copy of a template
gradebook; the parent process alone merges their results into the course gradebook (SQLite by
default, any SQLAlchemy URL with --db or c.CourseDirectory.db_url), one submission at a time.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning

from ..course import load_config, venv_env

CONNECT_TIMEOUT = 5  # seconds to reach a database server before `tutor` gives up with one line
DRIVERS = {"psycopg": "psycopg[binary] (pip install -e '.[postgres]')", "psycopg2": "psycopg2-binary",
           "pymysql": "pymysql", "mysqldb": "mysqlclient"}


def resolve_db_url(root: Path, db_url: str | None = None) -> str:
    """The gradebook URL: --db if given, else c.CourseDirectory.db_url of nbgrader_config.py (what
    formgrader uses), else gradebook.db in the course folder. A server URL gets a connect timeout."""
    if not db_url:
        configured = load_config(root).CourseDirectory
        db_url = configured.get("db_url") or f"sqlite:///{Path(root).resolve() / 'gradebook.db'}"
    return _with_connect_timeout(db_url)


def _with_connect_timeout(db_url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:  # an unparsable URL is reported by check_gradebook
        return db_url
    if url.get_backend_name() in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
    return url.render_as_string(hide_password=False)


def shown(db_url: str) -> str:
    """A gradebook URL for messages: no password, no connect timeout we added."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:
        return db_url.split("@")[-1] if "@" in db_url else db_url
    if url.query.get("connect_timeout") == str(CONNECT_TIMEOUT):
        url = url.difference_update_query(["connect_timeout"])
    return url.render_as_string(hide_password=True)


def check_gradebook(db_url: str) -> None:
    """RuntimeError with one line saying why, unless the gradebook database can be opened."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:
        raise RuntimeError(f"the gradebook URL {db_url!r} is not a database URL "
                           "(e.g. sqlite:////path/gradebook.db or postgresql://user@host/database)") from None
    try:
        engine = create_engine(url)
    except ImportError as error:  # the dialect's driver is not installed
        driver = getattr(error, "name", None) or url.get_driver_name()
        raise RuntimeError(f"cannot open the gradebook {shown(db_url)}: its database driver {driver} is not "
                           f"installed; install {DRIVERS.get(driver, driver)}") from None
    except Exception as error:  # an unknown dialect, a bad port
        raise RuntimeError(f"cannot open the gradebook {shown(db_url)}: {_first_line(error)}") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        raise RuntimeError(f"cannot open the gradebook {shown(db_url)}: {_first_line(error)}") from None
    finally:
        engine.dispose()


def _first_line(error: Exception) -> str:
    """The driver's own message, first line, without SQLAlchemy's background links."""
    error = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


@contextlib.contextmanager
def open_gradebook(db_url: str, course_id: str = "") -> Iterator[Gradebook]:
    """A Gradebook session (nbgrader creates the tables of a new database)."""
    os.environ["PATH"] = venv_env()["PATH"]
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


def copy_duedate(source_url: str, dest_url: str, assignment: str) -> None:
    """Give the assignment in dest the due date it has in source (None when it has none)."""
    with open_gradebook(source_url) as source:
        try:
            duedate = source.find_assignment(assignment).duedate
        except MissingEntry:
            duedate = None
    with open_gradebook(dest_url) as dest:
        dest.update_or_create_assignment(assignment, duedate=duedate)


def grade_ids_in_order(release_nb) -> list[str]:
    """grade_ids of a notebook's graded cells (tests and written answers), in notebook order."""
    return [cell.metadata["nbgrader"]["grade_id"] for cell in release_nb.cells
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade")]


def read_autogrades(db_url: str, assignment: str, student: str) -> dict:
    """A worker's results from its private gradebook: every grade and comment of the submission."""
    with open_gradebook(db_url) as gb:
        submission = gb.find_submission(assignment, student)
        result = {"grades": [], "comments": [], "penalties": {}, "seconds_late": submission.total_seconds_late or 0}
        for nb in submission.notebooks:
            result["penalties"][nb.name] = nb.late_submission_penalty
            for grade in nb.grades:
                result["grades"].append({"notebook": nb.name, "id": grade.name, "auto_score": grade.auto_score,
                                         "max": grade.max_score, "needs_manual_grade": grade.needs_manual_grade,
                                         "written": grade.cell.cell_type == "markdown"})
            for comment in nb.comments:
                result["comments"].append({"notebook": nb.name, "id": comment.name, "auto_comment": comment.auto_comment})
        return result


def merge_result(gb: Gradebook, assignment: str, student: str, result: dict | None,
                 changed: bool | set[str] = True) -> list[str]:
    """Write one worker's autogrades into the course gradebook (None: the submission could not be graded).

    Only automatic scores are written: a grader's manual scores and comments survive a regrade. A manual
    score stays reviewed (formgrader shows nothing to grade) when the answers did not change, and is
    flagged for review again when they did (`changed`: all answers, none, or a set of grade ids);
    returns the grade ids flagged again.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission trips SQLAlchemy's autoflush warning
        return _merge(gb, assignment, student, result, changed)


def _merge(gb: Gradebook, assignment: str, student: str, result: dict | None, changed: bool | set[str]) -> list[str]:
    gb.update_or_create_student(student)
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        if result is None:
            return []
        submission = gb.add_submission(assignment, student)
    if result is None:
        for nb in submission.notebooks:
            for grade in nb.grades:
                grade.auto_score, grade.needs_manual_grade = None, True
        gb.db.commit()
        return []
    reflagged = []
    for item in result["grades"]:
        grade = gb.find_grade(item["id"], item["notebook"], assignment, student)
        grade.auto_score = item["auto_score"]
        if grade.manual_score is None:
            grade.needs_manual_grade = bool(item["needs_manual_grade"])
        elif (changed if isinstance(changed, bool) else grade.name in changed) and not grade.needs_manual_grade:
            grade.needs_manual_grade = True
            reflagged.append(grade.name)
    for item in result["comments"]:
        gb.find_comment(item["id"], item["notebook"], assignment, student).auto_comment = item["auto_comment"]
    for nb in submission.notebooks:
        nb.late_submission_penalty = result["penalties"].get(nb.name)
    gb.db.commit()
    return reflagged


def read_scores(gb: Gradebook, assignment: str, student: str) -> dict[str, dict] | None:
    """{grade_id: {"points", "max", "written", "review"}} of a submission; points is a manual score where
    one was given; review: formgrader lists it as needing grading."""
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
                                  "written": grade.cell.cell_type == "markdown", "review": bool(grade.needs_manual_grade)}
    return scores


def read_penalty(gb: Gradebook, assignment: str, student: str) -> float:
    """nbgrader's late penalty of a submission (0 when it was on time or has no due date)."""
    try:
        return float(sum(nb.late_submission_penalty or 0 for nb in gb.find_submission(assignment, student).notebooks))
    except MissingEntry:
        return 0.0


def submissions_in(gb: Gradebook, assignments: list[str]) -> list[tuple[str, str]]:
    """(student, assignment) of every submission the gradebook holds for these assignments."""
    found = []
    for name in assignments:
        try:
            found += [(submission.student.id, name) for submission in gb.find_assignment(name).submissions]
        except MissingEntry:
            continue
    return found
