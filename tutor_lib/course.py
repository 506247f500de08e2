"""nbgrader glue: regenerate the student notebooks from the solutions.

The repository root is the nbgrader course directory: `solutions/` is nbgrader's source
folder and `notebooks/` its release folder (see nbgrader_config.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def find_course_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) with nbgrader_config.py."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").exists() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(f"no course folder (nbgrader_config.py and solutions/) at or above {here}")


def list_assignments(root: Path) -> list[str]:
    """Assignment names: the folders of solutions/ that hold a notebook of the same name."""
    return sorted(p.name for p in (root / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())


def nbgrader_env() -> dict:
    """The environment for nbgrader: this Python's bin folder first on PATH (nbgrader runs alembic)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `nbgrader ARGS` in the course folder; raises RuntimeError with nbgrader's log on failure."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=nbgrader_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def normalize_notebook(path: Path) -> None:
    """Rewrite a notebook as nbformat does (indent 1, sorted keys, trailing newline), for stable diffs."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def generate_releases(root: Path, assignments: list[str] | None = None, release_dir: Path | None = None,
                      use_db: bool = False, db_url: str | None = None) -> list[Path]:
    """Regenerate release notebooks from solutions/ (into release_dir, default notebooks/); with use_db,
    also record each assignment and its graded cells in the gradebook (db_url, default gradebook.db)."""
    from .grading.gradebook import api_error, default_db_url, load_config, make_api  # nbgrader: imported on use

    release_dir = Path(release_dir or root / "notebooks").resolve()
    # Without use_db nothing may touch a gradebook: nbgrader's --no-db is these two settings (and an
    # in-memory URL makes sure no gradebook.db file appears).
    config = load_config(root / "nbgrader_config.py", root, (db_url or default_db_url(root)) if use_db else "sqlite://",
                         CourseDirectory={"release_directory": str(release_dir)},
                         GenerateAssignment={"no_database": not use_db}, SaveCells={"enabled": use_db})
    api = make_api(config)  # in-process: one interpreter start for all assignments
    written = []
    for name in assignments or list_assignments(root):
        result = api.generate_assignment(name, force=True, create=use_db)
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment {name} failed: {api_error(result)}")
        for nb in sorted((release_dir / name).glob("*.ipynb")):
            normalize_notebook(nb)
            written.append(nb)
    return written
