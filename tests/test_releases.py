"""notebooks/ is exactly what nbgrader generates from solutions/, and every release's tests fail on its stubs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tutor_lib.course import generate_releases, list_assignments, venv_env

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = list_assignments(ROOT)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    generate_releases(ROOT, release_dir=out)
    return out


def test_every_solution_has_a_release():
    releases = sorted(p.parent.name for p in (ROOT / "notebooks").glob("*/*.ipynb"))
    assert releases == ASSIGNMENTS, "run `tutor release` to regenerate notebooks/ from solutions/"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_up_to_date(assignment, regenerated):
    committed = ROOT / "notebooks" / assignment / f"{assignment}.ipynb"
    fresh = regenerated / assignment / f"{assignment}.ipynb"
    assert committed.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
        f"notebooks/{assignment} is stale: run `tutor release` and commit the result"
    )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_is_committed_clean(assignment):
    """Sources carry no outputs, have stable cell ids and the python3 kernelspec."""
    path = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    ids = [cell.get("id") for cell in nb["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs a unique, stable id"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {cell['id']} has outputs"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_has_stubs_and_no_solutions(assignment):
    cells = _cells(ROOT / "notebooks" / assignment / f"{assignment}.ipynb")
    text = "".join("".join(c["source"]) for c in cells)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    solution_cells = [c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert solution_cells, "a release without exercises"
    code_stubs = [c for c in solution_cells if c["cell_type"] == "code"]
    assert all("raise NotImplementedError()" in "".join(c["source"]) for c in code_stubs)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_tests_fail_on_stubs(assignment, tmp_path):
    """`nbgrader validate --invert`: every autograded test cell of the untouched release fails."""
    release = ROOT / "notebooks" / assignment / f"{assignment}.ipynb"
    copy = tmp_path / release.name
    copy.write_bytes(release.read_bytes())
    env = dict(venv_env(), TUTOR_QUICK="1")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "validate", "--invert", str(copy)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Success! The notebook does not pass any tests." in output, output
    assert os.path.exists(copy)
