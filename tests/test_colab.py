"""Students in Colab: one setting says where the course lives, and a Colab-like runtime can install it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tutor_lib.colab import (
    INSTALL_END,
    CourseSource,
    install_block,
    read_source,
    rewrite_readme,
    setup_source,
    validate,
    write_source,
)
from tutor_lib.course import list_assignments

ROOT = Path(__file__).resolve().parents[1]
FORK = CourseSource("https://github.com/some-teacher/shapes-course.git", "fall-2027")


def setup_cell(path: Path) -> str:
    return next(c.source for c in nbformat.read(path, as_version=4).cells if c.get("id") == "setup")


def test_a_github_url_in_any_spelling_gives_one_pip_url():
    for url in ("https://github.com/some-teacher/shapes-course", "https://github.com/some-teacher/shapes-course.git",
                "git@github.com:some-teacher/shapes-course.git", "ssh://git@github.com/some-teacher/shapes-course"):
        source = CourseSource(url, "fall-2027")
        assert source.github == ("some-teacher", "shapes-course")
        assert source.pip_url == "git+https://github.com/some-teacher/shapes-course@fall-2027"
    gitlab = CourseSource("https://gitlab.com/t/course.git", "v1")
    assert gitlab.github is None and gitlab.pip_url == "git+https://gitlab.com/t/course.git@v1"


def test_bad_settings_are_refused_in_one_line():
    for bad in (CourseSource("github.com/a/b"), CourseSource("https://github.com/a/b", "main; rm -rf /"),
                CourseSource("https://github.com/a/b", "../x")):
        with pytest.raises(ValueError, match="--repo-url|--ref"):
            validate(bad)
    assert validate(FORK) is FORK


def test_the_setting_round_trips_through_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.ruff]\nline-length = 99\n')
    assert read_source(tmp_path, origin=False) == CourseSource("", "main")
    write_source(tmp_path, FORK)
    assert read_source(tmp_path, origin=False) == FORK
    write_source(tmp_path, CourseSource("https://gitlab.com/t/c", "v2"))  # replaced in place, not appended twice
    text = (tmp_path / "pyproject.toml").read_text()
    assert text.count("[tool.tutor]") == 1 and "line-length = 99" in text
    assert read_source(tmp_path, origin=False) == CourseSource("https://gitlab.com/t/c", "v2")


def test_a_course_without_pyproject_has_no_setting_until_one_is_given(tmp_path):
    assert read_source(tmp_path, origin=False) == CourseSource()
    write_source(tmp_path, FORK)
    assert read_source(tmp_path, origin=False) == FORK


def test_a_github_origin_is_the_default(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "remote", "add", "origin", "git@github.com:a-fork/course.git"], cwd=tmp_path, check=True)
    assert read_source(tmp_path) == CourseSource("git@github.com:a-fork/course.git", "main")
    assert read_source(tmp_path, origin=False).repo_url == ""


def test_regenerating_the_install_block_keeps_the_rest_of_the_setup_cell():
    rest = "import torch\nimport tutor_lib\ndevice = tutor_lib.setup(seed=42)"
    cell = setup_source("# old install\nimport sys\n\n" + rest, FORK)
    assert cell.endswith(rest) and cell.startswith(install_block(FORK))
    assert setup_source(cell, FORK) == cell  # idempotent
    again = setup_source(cell, CourseSource())
    assert again.endswith(rest) and FORK.pip_url not in again and INSTALL_END in again
    compile(cell, "setup", "exec")
    compile(again, "setup", "exec")


def test_every_notebook_installs_from_the_course_setting():
    source = read_source(ROOT, origin=False)
    for name in list_assignments(ROOT):
        for folder in ("solutions", "notebooks"):
            cell = setup_cell(ROOT / folder / name / f"{name}.ipynb")
            assert cell == setup_source(cell, source), f"{folder}/{name}: run `tutor release` to rewrite its setup cell"


def test_the_readme_badges_follow_the_setting():
    readme = (ROOT / "README.md").read_text()
    assert rewrite_readme(readme, read_source(ROOT, origin=False)) == readme, "run `tutor release` to rewrite the badges"
    rows = [line for line in readme.splitlines() if line.startswith("| 0") and "notebooks/" in line]
    assert len(rows) == len(list_assignments(ROOT))
    forked = rewrite_readme(readme, FORK)
    for name in list_assignments(ROOT):
        url = f"https://colab.research.google.com/github/some-teacher/shapes-course/blob/fall-2027/notebooks/{name}/{name}.ipynb"
        assert url in forked
    elsewhere = rewrite_readme(forked, CourseSource("https://gitlab.com/t/c", "v1"))
    assert "colab.research.google.com/github" not in elsewhere and "Upload notebook" in elsewhere
    assert rewrite_readme(elsewhere, FORK) == forked


def course_copy(tmp_path: Path) -> Path:
    """The working tree's tracked and unignored files, as a fresh git repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    copy = tmp_path / "course"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def tutor(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "tutor_lib", *args], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_release_from_a_fork_points_every_notebook_and_badge_at_the_fork(tmp_path):
    copy = course_copy(tmp_path)
    bad = tutor(copy, "release", "--no-db", "01_loss", "--repo-url", "github.com/no-scheme")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--repo-url" in bad.stderr
    done = tutor(copy, "release", "--no-db", "01_loss", "--repo-url", FORK.repo_url, "--ref", FORK.ref)
    assert done.returncode == 0, done.stderr
    assert read_source(copy, origin=False) == FORK
    for name in list_assignments(copy):
        assert f'COURSE = "{FORK.pip_url}"' in setup_cell(copy / "solutions" / name / f"{name}.ipynb")
    assert f'COURSE = "{FORK.pip_url}"' in setup_cell(copy / "notebooks/01_loss/01_loss.ipynb")
    assert "some-teacher/shapes-course/blob/fall-2027/notebooks/08_multiturn" in (copy / "README.md").read_text()


# -- the Colab path, offline --------------------------------------------------------------------

def fill_in(release: Path, solution: Path, out: Path) -> None:
    """The release notebook with each exercise cell's code taken from the solution, as a student would write it."""
    nb, answers = nbformat.read(release, as_version=4), nbformat.read(solution, as_version=4)
    code = {c.get("id"): c.source for c in answers.cells if c.cell_type == "code"}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = code[cell.get("id")]
    nbformat.write(nb, out)


def colab_runtime(tmp_path: Path) -> Path:
    """A venv with what Colab preinstalls (torch, numpy, matplotlib, tqdm, ipykernel, ipywidgets) and a stub
    google.colab, without tutor_lib."""
    import torch

    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "pip>=24"], check=True, timeout=300)  # Colab's pip is recent; pip < 24 rejects "name @ git+file://"
    subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}", "numpy", "matplotlib", "tqdm", "ipykernel",
                    "ipywidgets"], check=True, timeout=900)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s module, for tests."""\n')
    (site / "zz_colab_stub.pth").write_text("import google.colab\n")  # imported at every start, as on Colab
    subprocess.run([python, "-m", "ipykernel", "install", "--prefix", tmp_path / "jupyter", "--name", "colab"],
                   check=True, capture_output=True)
    return python


@pytest.mark.slow
def test_a_colab_runtime_installs_the_course_at_its_ref_and_runs_the_notebooks(tmp_path):
    copy = course_copy(tmp_path)
    repo = f"file://{copy}"
    released = tutor(copy, "release", "--no-db", "01_loss", "--repo-url", repo, "--ref", "colab-test")
    assert released.returncode == 0, released.stderr
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"], ["tag", "colab-test"]):
        subprocess.run([*git, *args], cwd=copy, check=True)

    python = colab_runtime(tmp_path)
    version = [python, "-c", "import torch, numpy, matplotlib as m; print(torch.__version__, numpy.__version__, m.__version__)"]
    before = subprocess.run(version, capture_output=True, text=True, check=True).stdout
    content = tmp_path / "content"  # a Colab notebook sits alone in /content
    content.mkdir()
    fill_in(copy / "notebooks/01_loss/01_loss.ipynb", copy / "solutions/01_loss/01_loss.ipynb", content / "01_loss.ipynb")
    shutil.copy(copy / "solutions/05_stage1/05_stage1.ipynb", content / "05_stage1.ipynb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTOR_")}  # as a student's runtime: no settings
    env["JUPYTER_PATH"] = str(tmp_path / "jupyter" / "share" / "jupyter")

    def execute(name: str, *options: str) -> list[dict]:
        run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                              "--ExecutePreprocessor.kernel_name=colab", "--ExecutePreprocessor.timeout=900", *options,
                              content / f"{name}.ipynb"], cwd=content, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        cells = nbformat.read(content / f"{name}.ipynb", as_version=4).cells
        return [o for c in cells if c.get("id") == "setup" for o in c.outputs]

    assert any("Installed tutor_lib from git+file://" in o.get("text", "") for o in execute("01_loss"))
    execute("05_stage1")
    setup = next(c for c in nbformat.read(content / "01_loss.ipynb", as_version=4).cells if c.get("id") == "setup")
    for name, source in (("again", setup.source), ("wrong_ref", setup.source.replace("@colab-test", "@no-such-ref"))):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, id="setup")]),
                       content / f"{name}.ipynb")
    again = execute("again")
    assert again[0]["text"].startswith(f"tutor_lib is installed from git+file://{copy}@colab-test\n")  # no second install
    wrong = execute("wrong_ref", "--allow-errors")
    errors = [o for o in wrong if o["output_type"] == "error"]
    assert [o["ename"] for o in errors] == ["SystemExit"] and "@no-such-ref" in errors[0]["evalue"]
    assert "Could not install tutor_lib" in errors[0]["evalue"] and "\n" not in errors[0]["evalue"]
    assert not any("Traceback" in o.get("text", "") for o in wrong)  # IPython's "To exit: use 'exit'" note at most
    where = "import importlib.metadata as m; print(m.distribution('tutor-lib').read_text('direct_url.json'))"
    direct = subprocess.run([python, "-c", where], cwd=content, capture_output=True, text=True, check=True).stdout
    installed = json.loads(direct)
    assert installed["url"] == repo and installed["vcs_info"]["requested_revision"] == "colab-test"
    assert subprocess.run(version, capture_output=True, text=True, check=True).stdout == before  # torch untouched
