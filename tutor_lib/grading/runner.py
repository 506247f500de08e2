"""`tutor grade`: autograde submitted/ in parallel worker processes, merge into the gradebook, write the report.

Each submission is graded in its own temporary course folder with a private copy of a template
gradebook (made once per assignment from solutions/), by a long-lived worker process. This process
is the only writer of the course gradebook, autograded/, feedback/ and grades.*: it merges results
one at a time as they arrive, so parallel grading cannot corrupt SQLite.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..course import api_error, list_assignments, load_config, make_api
from . import DEFAULT_TIMEOUT
from .gradebook import (
    cell_signature,
    check_gradebook,
    copy_duedate,
    grade_ids_in_order,
    merge_result,
    open_gradebook,
    read_penalty,
    read_scores,
    resolve_db_url,
    submissions_in,
)
from .pool import run_jobs
from .preflight import exercise_ids
from .report import GRADED, NO_GRADES, NOT_YET, OTHER_MACHINE, load_entries, make_entry, write_report


@dataclass
class GradeRun:
    """What one `tutor grade` did: the entries it (re)graded, the report files, time and workers used."""

    entries: list[dict]
    report: tuple[Path, Path]
    seconds: float
    workers: int
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def find_submissions(root: Path, known: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(student, assignment) pairs of submitted/<student>/<assignment>/, and the folders that are no assignment."""
    pairs, skipped = [], []
    for student in sorted(p for p in (root / "submitted").iterdir() if p.is_dir() and not p.name.startswith(".")):
        for folder in sorted(p for p in student.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name in known:
                pairs.append((student.name, folder.name))
            else:
                skipped.append(f"submitted/{student.name}/{folder.name}: no assignment of that name in solutions/")
    return pairs, skipped


def _exercises(root: Path, assignment: str) -> tuple[list[str], dict[str, dict], set[str]]:
    """From the solution notebook: graded cell ids in order, their maxima, and its exercise ids."""
    nb = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    maxima = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            maxima[meta["grade_id"]] = {"points": None, "max": float(meta.get("points", 0)),
                                        "written": cell.cell_type == "markdown"}
    return grade_ids_in_order(nb), maxima, exercise_ids(nb)


def _prepare_templates(root: Path, assignments: list[str], tmp: Path, db_url: str) -> str:
    """Generate each assignment into a template gradebook (and the course gradebook when it lacks it)."""
    template_db = f"sqlite:///{tmp / 'template.db'}"
    api = make_api(load_config(root, template_db, CourseDirectory={"release_directory": str(tmp / "release")}))
    for assignment in assignments:
        result = api.generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader cannot generate {assignment} from solutions/: {api_error(result)}")
        if cell_signature(db_url, assignment) != cell_signature(template_db, assignment):
            course_api = make_api(load_config(root, db_url, CourseDirectory={
                "release_directory": str(tmp / "release-course")}))
            result = course_api.generate_assignment(assignment, force=True, create=True)
            if not result["success"]:
                raise RuntimeError(f"cannot record {assignment} in the gradebook: {api_error(result)}")
        copy_duedate(db_url, template_db, assignment)  # set in formgrader: late penalties need it in the workers
    return template_db


def _write_jobs(root: Path, pairs: list[tuple[str, str]], tmp: Path, others: dict[str, list[str]]) -> list[dict]:
    jobs = []
    for number, (student, assignment) in enumerate(pairs):
        folder = tmp / "jobs" / f"{number:05d}"
        course = folder / "course"
        course.mkdir(parents=True)
        shutil.copyfile(tmp / "template.db", course / "gradebook.db")
        (course / "solutions").symlink_to(root / "solutions")
        job = {"config": str(root / "nbgrader_config.py"), "course": str(course), "assignment": assignment,
               "student": student, "submission": str(root / "submitted" / student / assignment),
               "release": str(tmp / "release" / assignment / f"{assignment}.ipynb"), "others": others}
        (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
        jobs.append({**job, "file": folder / "job.json", "folder": folder})
    return jobs


def _outcome(job: dict, outcome: str, timeout: float) -> dict:
    if outcome == "timeout":
        return {"status": f"not graded: the whole notebook ran longer than {timeout:g} s "
                          "(tutor grade --timeout); it was stopped", "notes": []}
    if outcome.startswith("error: "):
        return {"status": f"not graded: grader error: {outcome.removeprefix('error: ')}", "notes": []}
    if outcome == "done":
        try:
            return json.loads((job["folder"] / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    return {"status": "not graded: the grading process died while running it (did the notebook kill it?)", "notes": []}


def _not_graded_page(assignment: str, status: str) -> str:
    reason = html.escape(status.removeprefix("not graded: "))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{assignment}: not graded</title></head>\n"
            f"<body><h1>{assignment}: your submission could not be graded</h1>\n<p>Reason: {reason}</p>\n"
            "<p>Please check the file you handed in and contact your instructor.</p></body></html>\n")


def _publish(root: Path, job: dict, result: dict) -> None:
    """Replace the submission's autograded notebook and feedback in the course folder with this run's."""
    student, assignment = job["student"], job["assignment"]
    autograded, feedback = root / "autograded" / student / assignment, root / "feedback" / student / assignment
    shutil.rmtree(autograded, ignore_errors=True)
    shutil.rmtree(feedback, ignore_errors=True)
    feedback.mkdir(parents=True)
    if result["status"] != GRADED:
        (feedback / f"{assignment}.html").write_text(_not_graded_page(assignment, result["status"]), encoding="utf-8")
        return
    autograded.mkdir(parents=True)
    course = Path(job["course"])
    for path in (course / "autograded" / student / assignment).glob("*.ipynb"):
        shutil.copyfile(path, autograded / path.name)
    for path in (course / "feedback" / student / assignment).glob("*.html"):
        shutil.copyfile(path, feedback / path.name)


def _run_workers(jobs: list[dict], workers: int, timeout: float, log_path: Path):
    """Yield (job, result) as the grading processes finish them; their output goes to log_path."""
    with log_path.open("ab") as log:
        for index, outcome in run_jobs([job["file"] for job in jobs], workers, timeout, log):
            yield jobs[index], _outcome(jobs[index], outcome, timeout)


def _cores() -> int:
    """CPU cores this process may use (all of them where the OS cannot say, as on macOS)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _select(root: Path, students: list[str] | None, assignments: list[str] | None):
    """All (student, assignment) submissions, the selected ones, and the folders skipped; errors for bad filters."""
    known = list_assignments(root)
    for name in assignments or []:
        if name not in known:
            raise ValueError(f"unknown assignment {name!r} (solutions/ has: {', '.join(known) or 'none'})")
    if not (root / "submitted").is_dir():
        raise FileNotFoundError(f"no submitted/ folder in {root}: import submissions first with `tutor collect PATH`")
    all_pairs, skipped = find_submissions(root, known)
    pairs = [(s, a) for s, a in all_pairs if (not students or s in students) and (not assignments or a in assignments)]
    for name in students or []:
        if not any(s == name for s, _ in pairs):
            raise ValueError(f"no submissions of student {name!r} in submitted/ (for the chosen assignments)")
    if not pairs:
        raise ValueError("nothing to grade: submitted/ holds no <student>/<assignment>/ folders")
    return known, all_pairs, pairs, skipped


def _answers(path: Path) -> dict[str, tuple[str, str]] | None:
    """{grade_id: (cell_type, source)} of a notebook's nbgrader cells (answers and tests); None if absent."""
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None
    return {cell.metadata["nbgrader"]["grade_id"]: (cell.cell_type, cell.source) for cell in nb.cells
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")}


def _changed(root: Path, job: dict) -> set[str] | None:
    """The grade ids whose answers differ from those graded last time here (None: unknown, so all of them).

    A written answer counts as changed when its own cell did; any changed code cell changes every code
    grade (a test's score depends on all the code before it). A grader's manual scores stand for a
    regrade of the same answers and are flagged for review otherwise."""
    name = f"{job['assignment']}.ipynb"
    before = _answers(root / "autograded" / job["student"] / job["assignment"] / name)
    after = _answers(Path(job["course"]) / "autograded" / job["student"] / job["assignment"] / name)
    if before is None or after is None:
        return None
    changed = {grade_id for grade_id, cell in after.items() if before.get(grade_id) != cell}
    if any(after[grade_id][0] == "code" for grade_id in changed):
        changed |= {grade_id for grade_id, (kind, _) in after.items() if kind == "code"}
    return changed


def report_entries(gb, pairs: list[tuple[str, str]], info: dict, previous: dict, results: dict | None = None) -> dict:
    """A report entry for every (student, assignment) of `pairs` and of the gradebook: this run's result,
    else the previous report's, else what the gradebook holds (graded by another grader), else "not graded yet"."""
    results = results or {}
    pairs = sorted(set(pairs) | {key for key in submissions_in(gb, list(info)) if key not in pairs})
    entries = {}
    for key in pairs:
        student, assignment = key
        # Scores come from the gradebook, so a grader's manual scores show up in the report.
        scores = read_scores(gb, assignment, student)
        earlier = results.get(key) or previous.get(key)
        if earlier is None or earlier["status"] in (NOT_YET, OTHER_MACHINE):  # perhaps graded elsewhere since
            graded = scores is not None and any(s["points"] is not None for s in scores.values() if not s["written"])
            earlier = {"status": GRADED if graded else OTHER_MACHINE if scores else NOT_YET, "notes": []}
        status, notes = earlier["status"], earlier.get("notes", [])
        if status == GRADED and scores is None and key in previous and key not in results:
            entries[key] = previous[key]  # graded with another gradebook (--db): keep that row
            continue
        if status == GRADED and scores is None:
            status = NO_GRADES
        order, maxima, _ = info[assignment]
        entries[key] = make_entry(student, assignment, status, scores or maxima, order, notes,
                                  read_penalty(gb, assignment, student) if status == GRADED else 0.0)
    return entries


def grade(root: Path, students: list[str] | None = None, assignments: list[str] | None = None,
          workers: int | None = None, db_url: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          progress: bool = True) -> GradeRun:
    """Autograde the selected submissions of submitted/ in parallel; write grades.csv/json and feedback/."""
    started, root = time.monotonic(), Path(root).resolve()
    known, all_pairs, pairs, skipped = _select(root, students, assignments)
    db_url = resolve_db_url(root, db_url)
    check_gradebook(db_url)
    with _one_run_at_a_time(root):
        return _grade(root, started, known, all_pairs, pairs, skipped, workers, db_url, timeout, progress)


def report(root: Path, db_url: str | None = None, output: Path | None = None) -> tuple[list[dict], tuple[Path, Path]]:
    """grades.csv and grades.json for everything in the gradebook (several graders sharing one database)
    and in this folder's submitted/, without grading; written into `output` (default: the course folder)."""
    root = Path(root).resolve()
    db_url = resolve_db_url(root, db_url)
    check_gradebook(db_url)
    known = list_assignments(root)
    pairs = find_submissions(root, known)[0] if (root / "submitted").is_dir() else []
    info = {name: _exercises(root, name) for name in known}
    course_id = load_config(root).CourseDirectory.get("course_id", "")
    with open_gradebook(db_url, course_id) as gb:
        entries = report_entries(gb, pairs, info, load_entries(root / "grades.json"))
    rows = list(entries.values())
    return rows, write_report(Path(output or root), rows, course_id)


@contextlib.contextmanager
def _one_run_at_a_time(root: Path):
    """Hold a lock on the course's .nbgrader.log: two runs would overwrite each other's reports."""
    with (root / ".nbgrader.log").open("ab") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            raise RuntimeError(f"another tutor grade is running in {root}; wait for it to finish") from None
        yield


def _grade(root, started, known, all_pairs, pairs, skipped, workers, db_url, timeout, progress) -> GradeRun:
    from tqdm.auto import tqdm

    workers = max(1, min(workers or _cores(), len(pairs)))
    course_id = load_config(root).CourseDirectory.get("course_id", "")
    info = {name: _exercises(root, name) for name in known}
    others = {name: sorted(ids) for name, (_, _, ids) in info.items()}

    tmp = Path(tempfile.mkdtemp(prefix="tutor-grade-"))
    results: dict[tuple[str, str], dict] = {}
    try:
        _prepare_templates(root, sorted({a for _, a in pairs}), tmp, db_url)
        jobs = _write_jobs(root, pairs, tmp, others)
        with open_gradebook(db_url, course_id) as gb:
            with tqdm(total=len(jobs), desc="grading", unit="notebook", disable=not progress, leave=False) as bar:
                for job, result in _run_workers(jobs, workers, timeout, root / ".nbgrader.log"):
                    key = (job["student"], job["assignment"])
                    changed = _changed(root, job) if result["status"] == GRADED else set()  # before _publish
                    _publish(root, job, result)
                    reflagged = merge_result(gb, key[1], key[0], result if result["status"] == GRADED else None,
                                             True if changed is None else changed)
                    if reflagged:
                        result["notes"].append(f"the answers changed since they were graded by hand: review "
                                               f"{', '.join(reflagged)} in formgrader")
                    results[key] = result
                    bar.set_postfix_str(f"{key[0]}/{key[1]}", refresh=False)
                    bar.update(1)
            entries = report_entries(gb, all_pairs, info, load_entries(root / "grades.json"), results)
        written = write_report(root, list(entries.values()), course_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    errors = [f"{s}/{a}: {r.get('log', '').strip()}" for (s, a), r in results.items() if "grader error" in r["status"]]
    return GradeRun([entries[k] for k in pairs], written, time.monotonic() - started, workers, skipped, errors)
