"""Helpers for the grading tests: a temporary course folder and submissions built from a release notebook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "course"

# Short limits so the timeout cases take seconds; what they exercise is the same as with 120 s. A setup
# cell (import torch) must still fit on a busy 2-core machine: at 10 s it did not when five test runs
# shared two cores (load 8), and was reported as a cell that ignored the interrupt.
CELL_TIMEOUT = 30
TEST_LIMITS = """
# --- grading tests: short limits ---
c.Execute.timeout = {cell}
c.ExecutePreprocessor.timeout = {cell}
c.GuardedExecute.interrupt_grace = 3
"""


def make_course(folder: Path, solutions: Path = FIXTURE / "solutions", assignments: list[str] | None = None,
                cell_timeout: int = CELL_TIMEOUT) -> Path:
    """A course folder: the repository's nbgrader_config.py (with short limits), solutions/ and fresh notebooks/."""
    from tutor_lib.course import generate_releases
    from tutor_lib.grading.gradebook import resolve_db_url

    folder.mkdir(parents=True, exist_ok=True)
    config = (ROOT / "nbgrader_config.py").read_text(encoding="utf-8") + TEST_LIMITS.format(cell=cell_timeout)
    (folder / "nbgrader_config.py").write_text(config, encoding="utf-8")
    (folder / "pyproject.toml").write_text('[project]\nname = "course"\n', encoding="utf-8")  # tutor release's Colab setting
    for name in assignments or sorted(p.name for p in solutions.iterdir() if p.is_dir()):
        shutil.copytree(solutions / name, folder / "solutions" / name)
    generate_releases(folder, db_url=resolve_db_url(folder))
    return folder


def tutor(*args: str, cwd: Path, timeout: float = 2400) -> subprocess.CompletedProcess:
    """Run the `tutor` command line as an instructor would, from the course folder."""
    from tutor_lib.course import venv_env

    return subprocess.run([sys.executable, "-m", "tutor_lib", *args], cwd=cwd, env=venv_env(), capture_output=True,
                          text=True, timeout=timeout)


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def solved(course: Path, assignment: str, **replace: str) -> dict:
    """The release notebook with the solution cells' code filled in from solutions/ (what a good student hands in).

    `replace` swaps the source of cells by id; a value of None deletes the cell.
    """
    release = load(course / "notebooks" / assignment / f"{assignment}.ipynb")
    solution = {c["id"]: c for c in load(course / "solutions" / assignment / f"{assignment}.ipynb")["cells"]}
    cells = []
    for cell in release["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            lines = "".join(solution[cell["id"]]["source"]).splitlines()
            cell["source"] = "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line
                                       and "### END SOLUTION" not in line)
        if cell["id"] in replace:
            if replace[cell["id"]] is None:
                continue
            cell["source"] = replace[cell["id"]]
        cells.append(cell)
    release["cells"] = cells
    return release


def untouched(course: Path, assignment: str) -> dict:
    """The release notebook exactly as students receive it."""
    return load(course / "notebooks" / assignment / f"{assignment}.ipynb")


def submit(course: Path, student: str, assignment: str, content: dict | str | bytes, name: str | None = None) -> Path:
    """Put a submission at submitted/<student>/<assignment>/<name or assignment>.ipynb."""
    path = course / "submitted" / student / assignment / (name or f"{assignment}.ipynb")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content, indent=1)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def hidden_lines(course: Path) -> list[str]:
    """Every non-trivial line between BEGIN/END HIDDEN TESTS in the course's solution notebooks."""
    lines = []
    for path in sorted((course / "solutions").glob("*/*.ipynb")):
        for cell in load(path)["cells"]:
            inside = False
            for line in "".join(cell["source"]).splitlines():
                if "BEGIN HIDDEN TESTS" in line:
                    inside = True
                elif "END HIDDEN TESTS" in line:
                    inside = False
                elif inside and len(line.strip()) >= 16:
                    lines.append(line.strip())
    return lines


def entries(course: Path) -> dict[tuple[str, str], dict]:
    """grades.json entries by (student, assignment)."""
    return {(e["student"], e["assignment"]): e for e in load(course / "grades.json")["grades"]}


def points(entry: dict) -> dict[str, float | None]:
    """{exercise id: points} of one report entry."""
    return {e["id"]: e["points"] for e in entry["exercises"]}
