"""The grades report: grades.json (the full record, read back by the next run, so regrading one
student keeps everyone else's rows) and grades.csv (one row per student and assignment).

status is "graded", or "not graded: <reason>"; a submission that was not graded has empty points,
never a 0 that looks like one.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

GRADED = "graded"
NOT_YET = "not graded: not graded yet (run tutor grade)"
NO_GRADES = "not graded: the gradebook has no grades for it (run tutor grade)"
OTHER_MACHINE = "not graded: another grader could not grade it (see the grades.json where it was graded)"


def make_entry(student: str, assignment: str, status: str, scores: dict[str, dict] | None, order: list[str],
               notes: list[str], penalty: float = 0.0) -> dict:
    """One report row: per-exercise points and maximum in notebook order, total (less nbgrader's late
    penalty), status and notes."""
    scores = scores or {}
    ids = [i for i in order if i in scores] + sorted(set(scores) - set(order))
    graded = status == GRADED
    exercises = [{"id": i, "points": scores[i]["points"] if graded else None, "max": scores[i]["max"],
                  "written": scores[i]["written"]} for i in ids]
    pending = [i for i, e in zip(ids, exercises) if graded and (e["points"] is None or scores[i].get("review"))]
    return {
        "student": student, "assignment": assignment, "status": status,
        "total": max(0.0, sum(e["points"] for e in exercises if e["points"] is not None) - penalty) if graded else None,
        "late_penalty": penalty if graded else None,
        "max_total": sum(e["max"] for e in exercises) if exercises else None,
        "exercises": exercises, "needs_manual_grading": pending, "notes": list(notes),
    }


def load_entries(path: Path) -> dict[tuple[str, str], dict]:
    """The entries of an earlier grades.json by (student, assignment); {} if there is none or it is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {(e["student"], e["assignment"]): e for e in data["grades"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(folder: Path, entries: list[dict], course_id: str) -> tuple[Path, Path]:
    """Write grades.json and grades.csv (sorted by student, then assignment) into `folder`."""
    entries = sorted(entries, key=lambda e: (e["student"], e["assignment"]))
    json_path, csv_path = Path(folder) / "grades.json", Path(folder) / "grades.csv"
    _write_atomic(json_path, json.dumps({"course": course_id, "grades": entries}, indent=1) + "\n")

    columns: list[str] = []
    for entry in entries:
        for exercise in entry["exercises"]:
            if exercise["id"] not in columns:
                columns.append(exercise["id"])
    header = ["student", "assignment", "status", "total", "max_total", "late_penalty"]
    header += [name for column in columns for name in (column, f"{column}_max")]
    header += ["needs_manual_grading", "notes"]
    rows = []
    for entry in entries:
        by_id = {e["id"]: e for e in entry["exercises"]}
        row = {"student": entry["student"], "assignment": entry["assignment"], "status": entry["status"],
               "total": _number(entry["total"]), "max_total": _number(entry["max_total"]),
               "late_penalty": _number(entry.get("late_penalty")),
               "needs_manual_grading": " ".join(entry["needs_manual_grading"]), "notes": "; ".join(entry["notes"])}
        for column in columns:
            if column in by_id:
                row[column], row[f"{column}_max"] = _number(by_id[column]["points"]), _number(by_id[column]["max"])
        rows.append(row)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, csv_path)
    return csv_path, json_path
