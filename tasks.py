#!/usr/bin/env python3
"""Set up a virtual environment and run the course's main job or its tests. Needs only Python 3.10+.

    python3 tasks.py setup [tutor setup options] # students: JupyterLab with Validate, checked, no training
    python3 tasks.py run [tutor run options]     # train both stages, write outputs/
    python3 tasks.py test [pytest options]       # the whole test suite (unit, notebooks, grading), one worker per core

Environment variables:
    TUTOR_VENV   where the virtual environment lives (default .venv)
    TORCH_SPEC   a pip requirement for torch installed first, e.g. "torch==2.13.0" for a CPU-only
                 machine that has that wheel; by default pip resolves pyproject.toml's range.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TUTOR_VENV", ROOT / ".venv")).resolve()
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def _sh(*args: str | Path, env: dict | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


def ensure_venv(extra: str) -> dict:
    """Create the venv and install the package with `extra` once; reinstall when pyproject.toml changes."""
    if sys.version_info < (3, 10):  # noqa: UP036 (this script may be started by an older python3)
        sys.exit(f"Python 3.10 or newer is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"Creating a virtual environment in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    torch_spec = os.environ.get("TORCH_SPEC", "").strip()
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + f"|{extra}|{torch_spec}".encode()).hexdigest()
    stamp = VENV / f".tutor-{extra}"
    if not stamp.exists() or stamp.read_text() != key:
        pip = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if torch_spec:
            _sh(*pip, torch_spec)
        _sh(*pip, "-e", f".[{extra}]")
        stamp.write_text(key)
    env = dict(os.environ, VIRTUAL_ENV=str(VENV))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs alembic from here
    env.pop("PYTHONHOME", None)
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("setup", "run", "test"):
        print(__doc__.strip())
        return 2
    command, rest = argv[0], argv[1:]
    if command in ("setup", "run"):
        env = ensure_venv("notebooks")
        return subprocess.call([str(BIN / "tutor"), command, *rest], cwd=ROOT, env=env)
    env = ensure_venv("test")
    if not any(a in ("-n", "--numprocesses") or a.startswith(("-n", "--numprocesses=")) for a in rest):
        rest = ["-n", "auto", "--dist", "loadscope", *rest]  # one worker per core; a notebook stays on one worker
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
