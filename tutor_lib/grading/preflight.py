"""Before nbgrader sees a submission: read it defensively, check it is this assignment's notebook,
put back the graded and locked cells a student deleted or whose grading metadata they changed,
and flag code that tampers with what the checks trust or reads the test cells.

nbgrader restores the *source* of edited locked cells, and its OverwriteCells.add_missing_cells
puts back deleted test cells, but it trusts the metadata that says which cell is a test and fails
on some deletions (a test cell whose solution cell was deleted too). restore_cells does both jobs,
with the release notebook as the authority, so add_missing_cells stays off.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from pathlib import Path

import nbformat

MAX_NOTEBOOK_BYTES = 200 * 2**20  # larger files are not notebooks a student wrote


class NotGradable(Exception):
    """The submission cannot be graded; the message is the reason shown in the report."""


def read_submission(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> nbformat.NotebookNode:
    """The submitted notebook as nbformat 4, or NotGradable saying why it is not a readable notebook."""
    size = path.stat().st_size
    if size == 0:
        raise NotGradable("the file is empty (0 bytes)")
    if size > max_bytes:
        raise NotGradable(f"the file is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB limit")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotGradable("the file is not text (not UTF-8): not a Jupyter notebook") from None
    if not text.strip():
        raise NotGradable("the file holds only whitespace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # "Unterminated string starting at" + " at line 3": say "at" once
        where = f"{error.msg.removesuffix(' at')} at line {error.lineno}, column {error.colno}"
        raise NotGradable(f"the file is not valid JSON ({where})") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise NotGradable("the file is JSON but not a Jupyter notebook (no cells)")
    cells = data.get("cells", [])
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        raise NotGradable("the notebook's structure is invalid: its cells are not a list of objects")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat warns while it repairs duplicate cell ids
            nb = nbformat.reads(text, as_version=4)
    except Exception as error:  # nbformat raises several kinds for broken structure
        raise NotGradable(f"the notebook's structure is broken: {_first_line(error)}") from None
    _fix_ids(nb)
    try:
        nbformat.validate(nb)
    except Exception:
        _repair(nb)
        try:
            nbformat.validate(nb)
        except Exception as error:
            raise NotGradable(f"the notebook's structure is invalid: {_first_line(error)}") from None
    return nb


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _fix_ids(nb: nbformat.NotebookNode) -> None:
    """Give cells without an id, or with a duplicate one, a unique id (deterministically, unlike nbformat)."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        return
    seen = set()
    for index, cell in enumerate(nb.get("cells", [])):
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            cell_id = next(f"cell-{index}-{n}" for n in range(len(nb.cells) + 1) if f"cell-{index}-{n}" not in seen)
            cell["id"] = cell_id
        seen.add(cell_id)


def _repair(nb: nbformat.NotebookNode) -> None:
    """Fix what editors commonly break: missing outputs/metadata fields, list-valued sources."""
    for cell in nb.get("cells", []):
        cell.setdefault("metadata", {})
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
        if cell.get("cell_type") == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)


def nbgrader_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The notebook's cells that carry nbgrader metadata, by grade_id (first occurrence wins, as in nbgrader)."""
    found = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id and grade_id not in found:
            found[grade_id] = cell
    return found


def exercise_ids(nb: nbformat.NotebookNode) -> set[str]:
    """grade_ids of the solution and test cells: what identifies an assignment's notebook."""
    return {gid for gid, cell in nbgrader_cells(nb).items()
            if cell.metadata["nbgrader"].get("solution") or cell.metadata["nbgrader"].get("grade")}


def check_assignment(nb: nbformat.NotebookNode, assignment: str, release: nbformat.NotebookNode,
                     others: dict[str, set[str]]) -> None:
    """NotGradable unless the notebook holds at least one of the assignment's exercise cells."""
    theirs = exercise_ids(nb)
    if theirs & exercise_ids(release):
        return
    best = max(others, key=lambda name: len(theirs & others[name]), default=None)
    if best is not None and theirs & others[best]:
        raise NotGradable(f"this is a notebook of assignment {best}, not {assignment}")
    raise NotGradable(f"the notebook has none of {assignment}'s exercise cells (was it started from a blank notebook?)")


def _role(cell: nbformat.NotebookNode) -> tuple:
    """What grading reads from a cell's nbgrader metadata (nbgrader keeps checksums and versions itself)."""
    meta = cell.metadata.get("nbgrader", {})
    points = float(meta["points"]) if meta.get("grade") and meta.get("points") is not None else None
    return (cell.cell_type, bool(meta.get("grade")), bool(meta.get("solution")), bool(meta.get("locked")),
            bool(meta.get("task")), points)


def restore_cells(nb: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
    """Put back deleted nbgrader cells and the release's grading metadata; returns notes for the report."""
    notes = []
    present = nbgrader_cells(nb)
    wanted = nbgrader_cells(release)
    for grade_id, cell in present.items():
        if grade_id in wanted:
            expected = wanted[grade_id].metadata["nbgrader"]
            if _role(cell) != _role(wanted[grade_id]):
                notes.append(f"reset the grading metadata of cell {grade_id}")
                cell.metadata["nbgrader"] = json.loads(json.dumps(expected))
            if expected.get("locked") and cell.source != wanted[grade_id].source:
                notes.append(f"restored edited locked cell {grade_id}")
    order = list(wanted)
    for position, grade_id in enumerate(order):
        if grade_id in present:
            continue
        restored = nbformat.from_dict(json.loads(json.dumps(wanted[grade_id])))
        if (nb.nbformat, nb.nbformat_minor) < (4, 5):
            restored.pop("id", None)
        elif restored.get("id") in {c.get("id") for c in nb.cells}:
            restored["id"] = ""  # _fix_ids gives it a fresh one
        anchor = next((present[g] for g in reversed(order[:position]) if g in present), None)
        index = nb.cells.index(anchor) + 1 if anchor is not None else 0
        nb.cells.insert(index, restored)
        present[grade_id] = restored
        notes.append(f"restored deleted cell {grade_id}")
    _fix_ids(nb)
    return notes


GUARDED_ROOTS = {"torch", "tutor_lib"}  # what the checks trust; code that changes them is flagged for review
INTROSPECTION = {"__code__", "__globals__", "__closure__", "__defaults__", "__kwdefaults__", "__builtins__",
                 # frames and the kernel's history: ways to read a test cell's (hidden) code while it runs
                 "_getframe", "f_back", "f_locals", "f_globals", "f_code", "tb_frame", "gi_frame", "cr_frame",
                 "history_manager", "input_hist_raw", "input_hist_parsed", "user_ns"}
CODE_READERS = {"inspect", "linecache"}  # modules that read source code or frames
HISTORY = re.compile(r"^(?:In|_ih|_i|_ii|_iii|_i\d+)$")  # IPython's record of every cell's source


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # unparse of odd nodes
        return "an attribute"


def _reads_code(node: ast.AST) -> list[str]:
    """What in this node can read the code of a running cell: inspect, linecache, In/_ih, frames by name."""
    if isinstance(node, ast.Import):
        return [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in CODE_READERS]
    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in CODE_READERS:
        return [f"imports {node.module}"]
    if isinstance(node, ast.Name) and HISTORY.match(node.id):
        return [f"reads {node.id} (the cells' source)"]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
            node.value in CODE_READERS or node.value in INTROSPECTION - {"user_ns"} or HISTORY.match(node.value)):
        return [f"names {node.value!r}"]
    return []


def suspicious_code(nb: nbformat.NotebookNode) -> list[str]:
    """Notes for the instructor on student cells that rebind torch or tutor_lib, rewrite functions, or
    can read the code of the test cells as they run (frames, inspect, linecache, In/_ih: a way to
    print hidden tests in a form feedback cannot recognise).

    The checks guard the common cases at run time (verify_integrity); this static scan runs outside
    the student's kernel, so a submission that defeats the guards is still flagged. It only adds notes.
    """
    trees = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
        try:
            trees.append((cell, index, ast.parse(code)))
        except (SyntaxError, ValueError):
            continue
    roots = set(GUARDED_ROOTS)
    for _, _, tree in trees:  # aliases: import torch.nn.functional as F, from tutor_lib import checks
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots.update(a.asname for a in node.names if a.asname and a.name.split(".")[0] in GUARDED_ROOTS)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in GUARDED_ROOTS:
                roots.update(a.asname or a.name for a in node.names)
    notes = []
    for cell, index, tree in trees:
        if cell.get("metadata", {}).get("nbgrader", {}).get("locked"):
            continue
        found = []
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, (ast.Assign, ast.Delete)):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            found += [f"changes {_dotted(t)}" for t in targets
                      if isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t) in roots]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") \
                    and node.args and _root(node.args[0]) in roots:
                found.append(f"calls {node.func.id} on {_dotted(node.args[0])}")
            if isinstance(node, ast.Attribute) and node.attr in INTROSPECTION:
                found.append(f"uses {node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "modules" and _root(node) == "sys":
                found.append("uses sys.modules")
            found += _reads_code(node)
        label = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id") or f"#{index + 1}"
        notes += [f"review by hand: cell {label} {what}" for what in dict.fromkeys(found)]
    return notes


def prepare(source: Path, dest: Path, assignment: str, release: nbformat.NotebookNode,
            others: dict[str, set[str]]) -> list[str]:
    """Read `source`, check and repair it, write it to `dest` without outputs; returns notes or raises NotGradable."""
    nb = read_submission(source)
    check_assignment(nb, assignment, release, others)
    notes = restore_cells(nb, release) + suspicious_code(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata["kernelspec"] = release.metadata.get("kernelspec", nb.metadata.get("kernelspec", {}))
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return notes
