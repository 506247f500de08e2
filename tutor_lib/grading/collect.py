"""`tutor collect`: import a zip or folder of LMS downloads into nbgrader's submitted/<student>/<assignment>/.

An LMS download holds one file per student per notebook, with the student id in the file name
(Canvas: `doejane_12345_678_01_loss.ipynb`; Moodle: `Jane Doe_12345_assignsubmission_file_/01_loss.ipynb`).
A regular expression with a named group `student` (and optionally `assignment`) is searched in each
file's path inside the download; without an `assignment` group, the assignment is the course
assignment whose name appears in the file name. Every file that cannot be placed is reported.

Each placed notebook gets nbgrader's timestamp.txt, the file's time in the download (Canvas and
Moodle set it to the upload time), so nbgrader's late penalties apply against the assignment's due
date. A file name with the LMS's `LATE` marker (Canvas: `doejane_LATE_12345_...`) also gets an
`lms-late` marker file, which the report notes.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path

DEFAULT_PATTERN = r"(?:^|/)(?P<student>[A-Za-z0-9][A-Za-z0-9.@-]*)_[^/]*$"  # the file name up to its first "_"
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")  # safe as a folder name and an nbgrader student id
MAX_FILE_BYTES = 200 * 2**20
LATE_MARKER = re.compile(r"(?:^|_)LATE_")  # Canvas: doejane_LATE_12345_678_01_loss.ipynb
LATE_FILE = "lms-late"  # next to the notebook in submitted/<student>/<assignment>/


@dataclass
class Collected:
    """What collect did: files placed (source -> destination) and files not placed (source, reason)."""

    placed: list[tuple[str, Path]] = field(default_factory=list)
    unplaced: list[tuple[str, str]] = field(default_factory=list)
    late: list[str] = field(default_factory=list)  # placed files the LMS marked LATE


def _entries(source: Path, stack: contextlib.ExitStack, zone: tzinfo) -> list[tuple[str, datetime, Callable[[], bytes], int]]:
    """(path inside the download, modification time in UTC, a function reading it, size) for every file.

    A zip stores local times without a zone: `zone` says which (an LMS's server usually writes UTC).
    """
    if source.is_dir():
        return [(p.relative_to(source).as_posix(), datetime.fromtimestamp(p.stat().st_mtime, timezone.utc),
                 p.read_bytes, p.stat().st_size) for p in sorted(source.rglob("*")) if p.is_file()]
    if zipfile.is_zipfile(source):
        archive = stack.enter_context(zipfile.ZipFile(source))
        return [(i.filename, datetime(*i.date_time, tzinfo=zone).astimezone(timezone.utc), (lambda i=i: archive.read(i)),
                 i.file_size) for i in sorted(archive.infolist(), key=lambda i: i.filename) if not i.is_dir()]
    raise ValueError(f"{source} is neither a folder nor a zip file")


def _assignment_in(base: str, assignments: list[str]) -> str | None:
    """The course assignment named in a file name; None when there is none or several."""
    found = [a for a in assignments if a in base]
    found = [a for a in found if not any(a != b and a in b for b in found)]  # "01_loss" inside "01_loss_extra"
    return found[0] if len(found) == 1 else None


def match_file(name: str, pattern: re.Pattern, assignments: list[str]) -> tuple[str, str] | str:
    """(student, assignment) for a file's path inside the download, or the reason it cannot be placed."""
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(".ipynb"):
        return "not a notebook (.ipynb)"
    found = pattern.search(name)
    if not found or not found.groupdict().get("student"):
        return "no student id in the name (see --pattern)"
    student = found.group("student")
    assignment = found.groupdict().get("assignment") or _assignment_in(base[: -len(".ipynb")], assignments)
    if assignment is None:
        return "no single assignment name of the course in the file name"
    if assignment not in assignments:
        return f"assignment {assignment!r} is not in solutions/"
    at = name.rfind(assignment)
    if "assignment" not in pattern.groupindex and found.start("student") < at + len(assignment) and at < found.end("student"):
        return "no student id in the name: the id found is part of the assignment name (see --pattern)"
    if not STUDENT_ID.match(student):
        return f"student id {student!r} is not usable as a folder name (see --pattern)"
    return student, assignment


def collect(source: Path, root: Path, assignments: list[str], pattern: str = DEFAULT_PATTERN,
            zone: tzinfo = timezone.utc) -> Collected:
    """Copy every notebook of `source` to submitted/<student>/<assignment>/<assignment>.ipynb with its
    timestamp.txt (and lms-late marker); report the rest. Of several files for one student and
    assignment (resubmissions), the newest is kept."""
    regex = re.compile(pattern)
    if "student" not in regex.groupindex:
        raise ValueError("the pattern needs a named group (?P<student>...)")
    outcome, chosen = Collected(), {}
    with contextlib.ExitStack() as stack:
        for name, mtime, read, size in _entries(Path(source), stack, zone):
            if name.startswith("__MACOSX/") or "/." in f"/{name}":
                outcome.unplaced.append((name, "system or hidden file"))
                continue
            match = match_file(name, regex, assignments)
            if isinstance(match, str):
                outcome.unplaced.append((name, match))
            elif size > MAX_FILE_BYTES:
                outcome.unplaced.append((name, f"larger than {MAX_FILE_BYTES // 2**20} MiB"))
            else:
                chosen.setdefault(match, []).append((mtime, name, read))
        for (student, assignment), files in sorted(chosen.items()):
            files.sort(key=lambda f: (f[0], f[1]))
            for _, name, _ in files[:-1]:
                outcome.unplaced.append((name, f"an older file of {student}/{assignment}; kept {files[-1][1]}"))
            mtime, name, read = files[-1]
            dest = Path(root) / "submitted" / student / assignment / f"{assignment}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(read())
            (dest.parent / "timestamp.txt").write_text(mtime.strftime("%Y-%m-%d %H:%M:%S UTC\n"), encoding="utf-8")
            late = dest.parent / LATE_FILE
            if LATE_MARKER.search(name.rsplit("/", 1)[-1]):
                late.write_text(f"{name}\n", encoding="utf-8")
                outcome.late.append(name)
            else:
                late.unlink(missing_ok=True)
            outcome.placed.append((name, dest))
    return outcome
