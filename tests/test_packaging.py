"""pyproject.toml and environment.yml name the same packages; the README's commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# conda names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip", "tomli"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    spec = requirement.split(";")[0].strip()[len(_name(requirement)):].replace(" ", "")
    return re.sub(r"^\[[^\]]*\]", "", spec)  # pip extras such as psycopg[binary]: conda packages have none


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {_name(r): _spec(r) for r in requirements if _name(r) not in NOT_PACKAGES}


def conda_requirements() -> dict[str, str]:
    found, section = {}, None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^[a-z]+:", line):
            section = line.split(":")[0]
        m = re.match(r"^\s{2}- ([A-Za-z0-9_.-]+)(.*)$", line)
        if section == "dependencies" and m and m.group(1) not in NOT_PACKAGES:
            found[CONDA_TO_PYPI.get(m.group(1), m.group(1)).lower()] = m.group(2).replace(" ", "")
    return found


def test_environment_yml_matches_pyproject():
    assert conda_requirements() == pyproject_requirements()


def test_torch_is_a_range_not_a_pin():
    spec = pyproject_requirements()["torch"]
    assert spec.startswith(">=") and "==" not in spec


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 tasks.py test" in readme and "python3 tasks.py run" in readme
    assert re.search(r"^python3 tasks.py test\s*$", ci, flags=re.M)


def test_the_wheel_ships_the_stage0_weights_and_the_effect_table(tmp_path):
    """A plain (non-editable) install, as Colab's pip makes from git, must carry the pretrained parts and
    the measured effects the checks quote."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    shipped = sorted(p.name for p in (ROOT / "tutor_lib" / "weights").glob("*.pt"))
    packed = sorted(Path(n).name for n in zipfile.ZipFile(wheel).namelist() if n.startswith("tutor_lib/weights/"))
    assert shipped and packed == shipped
    assert "tutor_lib/checks/effects.json" in zipfile.ZipFile(wheel).namelist()
