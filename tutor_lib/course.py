"""nbgrader glue: the course folder, its nbgrader_config.py, an in-process nbgrader, and the releases.

The repository root is the nbgrader course directory: `solutions/` is nbgrader's source folder
and `notebooks/` its release folder (see nbgrader_config.py). `tutor_lib.grading` builds on this
module; this module never imports it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
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


def venv_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default os.environ) with this Python's bin folder first on PATH.

    nbgrader runs `alembic` when it creates a gradebook, and a grading kernel must be this Python's.
    """
    env = dict(os.environ if base is None else base)
    bin_dir, path = str(Path(sys.executable).parent), env.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        env["PATH"] = f"{bin_dir}{os.pathsep}{path}" if path else bin_dir
    return env


def load_config(root: Path, db_url: str | None = None, config_file: Path | None = None, **sections: dict):
    """The course's nbgrader_config.py (or `config_file`) with its root set to `root`, the gradebook URL
    replaced when db_url is given, and any extra {section: {key: value}} settings."""
    from traitlets.config.loader import PyFileConfigLoader

    config_file = Path(config_file or Path(root) / "nbgrader_config.py")
    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    config.CourseDirectory.root = str(root)
    if db_url is not None:
        config.CourseDirectory.db_url = db_url
    for section, values in sections.items():
        for key, value in values.items():
            setattr(config[section], key, value)
    return config


def make_api(config):
    """An in-process nbgrader (no interpreter start per command) configured by `config`."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    os.environ["PATH"] = venv_env()["PATH"]
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def api_error(result: dict) -> str:
    """The most telling line of a failed nbgrader API call: the last exception or error message."""
    lines = [line.strip() for line in ((result.get("error") or "") + "\n" + (result.get("log") or "")).splitlines()]
    exceptions = [line for line in lines if line and ("Error:" in line or "Exception:" in line)]
    errors = [line[len("[ERROR]"):].strip() for line in lines if line.startswith("[ERROR]")
              and "There was an error processing" not in line and "Please see" not in line]
    return (exceptions or errors or ["nbgrader failed without a message"])[-1][:300]


def normalize_notebook(path: Path) -> None:
    """Rewrite a notebook as nbformat does (indent 1, sorted keys, trailing newline), for stable diffs."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def generate_releases(root: Path, assignments: list[str] | None = None, release_dir: Path | None = None,
                      db_url: str | None = None) -> list[Path]:
    """Regenerate release notebooks from solutions/ (into release_dir, default notebooks/). With db_url,
    also record each assignment and its graded cells in that gradebook; without, touch no gradebook."""
    release_dir = Path(release_dir or root / "notebooks").resolve()
    # nbgrader's --no-db is these two settings (and an in-memory URL makes sure no gradebook.db file appears).
    config = load_config(root, db_url or "sqlite://", CourseDirectory={"release_directory": str(release_dir)},
                         GenerateAssignment={"no_database": not db_url}, SaveCells={"enabled": bool(db_url)})
    api = make_api(config)  # in-process: one interpreter start for all assignments
    written = []
    for name in assignments or list_assignments(root):
        result = api.generate_assignment(name, force=True, create=bool(db_url))
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment {name} failed: {api_error(result)}")
        for nb in sorted((release_dir / name).glob("*.ipynb")):
            normalize_notebook(nb)
            written.append(nb)
    return written
