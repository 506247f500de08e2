"""A grading worker process: `python -m tutor_lib.grading.worker` reads job files, one path per line on
stdin, grades each in its own temporary course folder and private gradebook, writes the job's
result.json and answers `done` on stdout. Student code runs in a fresh kernel per notebook; the
parent kills this process (and its kernels) when a notebook runs past the whole-notebook limit.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path

import nbformat

from . import preprocessors
from .gradebook import api_error, load_config, make_api, read_autogrades
from .preflight import NotGradable, prepare


def _pick_notebook(folder: Path, assignment: str) -> tuple[Path, list[str]]:
    expected = folder / f"{assignment}.ipynb"
    if expected.is_file():
        return expected, []
    found = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
    if len(found) == 1:
        return found[0], [f"graded {found[0].name} as {expected.name}"]
    names = ", ".join(p.name for p in found) or "no notebook at all"
    raise NotGradable(f"no {expected.name} in the submission (found: {names})")


def _copy_timestamp(source: Path, dest: Path) -> None:
    # Only the notebook and nbgrader's timestamp.txt (late penalties) are graded. Other files a student
    # put next to the notebook are left out: a tutor_lib/ or torch.py there would shadow the real
    # packages in the kernel, whose working folder this is.
    dest.mkdir(parents=True, exist_ok=True)
    if (source / "timestamp.txt").is_file():
        shutil.copyfile(source / "timestamp.txt", dest / "timestamp.txt")


# A kernel that dies before answering kernel_info never ran a line of the student's code (seen on a busy
# CI machine with several kernels starting at once); trying again keeps that from costing a grade.
KERNEL_START_TRIES = 3


def _kernel_failed_to_start(autograded: dict) -> bool:
    return "before replying to kernel_info" in (autograded.get("error") or "") + (autograded.get("log") or "")


def autograde(api, assignment: str, student: str) -> dict:
    """nbgrader's autograde, tried again (up to KERNEL_START_TRIES in all) when the kernel died while starting."""
    for _ in range(KERNEL_START_TRIES):
        preprocessors.reset_failure()
        autograded = api.autograde(assignment, student, force=True, create=True)
        if autograded["success"] or preprocessors.last_failure() or not _kernel_failed_to_start(autograded):
            break
    return autograded


def grade_job(job: dict) -> dict:
    """Grade one submission as the job file describes; returns the result (also for ungradable submissions)."""
    course, assignment, student = Path(job["course"]), job["assignment"], job["student"]
    submitted = course / "submitted" / student / assignment
    result: dict = {"status": "graded", "notes": []}
    try:
        notebook, result["notes"] = _pick_notebook(Path(job["submission"]), assignment)
        _copy_timestamp(Path(job["submission"]), submitted)
        release = nbformat.read(job["release"], as_version=4)
        others = {name: set(ids) for name, ids in job["others"].items()}
        result["notes"] += prepare(notebook, submitted / f"{assignment}.ipynb", assignment, release, others)
    except NotGradable as reason:
        return {**result, "status": f"not graded: {reason}"}

    db_url = f"sqlite:///{course / 'gradebook.db'}"
    api = make_api(load_config(Path(job["config"]), course, db_url))
    autograded = autograde(api, assignment, student)
    if not autograded["success"]:
        reason = preprocessors.last_failure() or f"nbgrader could not run the notebook: {api_error(autograded)}"
        reason = reason.replace(f"{course}/", "")  # no temporary paths: a regrade must give the same report
        return {**result, "status": f"not graded: {reason}", "log": autograded.get("log", "")[-4000:]}
    result.update(read_autogrades(db_url, assignment, student))
    feedback = api.generate_feedback(assignment, student, force=True)
    if not feedback["success"]:
        result["notes"].append(f"no feedback: {api_error(feedback)}".replace(f"{course}/", ""))
    return result


def serve(requests, replies) -> None:
    """Answer job files read from `requests` (result.json next to each) until it closes."""
    for line in requests:
        if not line.strip():
            continue
        job_file = Path(line.strip())
        try:
            result = grade_job(json.loads(job_file.read_text(encoding="utf-8")))
        except Exception:  # a bug here must not stop the batch: the parent reports it per submission
            last = traceback.format_exc().strip().splitlines()[-1]
            result = {"status": f"not graded: grader error: {last}", "notes": [], "log": traceback.format_exc()}
        job_file.with_name("result.json").write_text(json.dumps(result), encoding="utf-8")
        replies.write("done\n")
        replies.flush()


def main() -> None:
    """Serve jobs; the protocol uses a private copy of stdout, so stray prints cannot corrupt it."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
