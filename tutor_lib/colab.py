"""Where the course lives, for students in Google Colab: one setting, written into every notebook.

A Colab notebook sits alone in /content with no tutor_lib, so its setup cell must install the
library itself, from the repository the course was released from, at exactly the release's ref
(a branch, tag or commit): a student's notebook and the library then never drift apart.

The setting is `[tool.tutor]` in pyproject.toml (`repo_url`, `ref`). `tutor release --repo-url URL
[--ref REF]` stores it, rewrites the setup cell of every notebook and the README's Colab badges.
With no setting, the clone's `origin` remote is used when it is on GitHub.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSTALL_END = "# -- end of the Colab install --"  # the setup cell's first part, up to this line, is generated


@dataclass(frozen=True)
class CourseSource:
    """A git repository URL ("" when unknown) and a ref."""

    repo_url: str = ""
    ref: str = "main"

    @property
    def github(self) -> tuple[str, str] | None:
        """(owner, name) when the repository is on GitHub, else None."""
        match = re.fullmatch(r"(?:https://|ssh://git@|git@)github\.com[/:]([\w.-]+)/([\w.-]+?)(?:\.git)?/?", self.repo_url)
        return (match[1], match[2]) if match else None

    @property
    def pip_url(self) -> str:
        """What pip installs: `git+URL@REF` (an https URL for a GitHub repository)."""
        url = f"https://github.com/{'/'.join(self.github)}" if self.github else self.repo_url
        return f"git+{url}@{self.ref}"


def validate(source: CourseSource) -> CourseSource:
    """The source, or ValueError with one line saying what is wrong."""
    if source.repo_url and not re.match(r"^(https?://|ssh://|git@|file://)", source.repo_url):
        raise ValueError(f"--repo-url must be a git URL (https://, ssh://, git@ or file://), got {source.repo_url!r}")
    if not re.fullmatch(r"[\w./-]+", source.ref) or ".." in source.ref:
        raise ValueError(f"--ref must be a branch, tag or commit name, got {source.ref!r}")
    return source


# -- the setting --------------------------------------------------------------------------------

_SECTION = "[tool.tutor]"


def read_source(root: Path, origin: bool = True) -> CourseSource:
    """The course's setting from pyproject.toml; an empty repo_url falls back to a GitHub `origin` remote."""
    path = root / "pyproject.toml"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    values = dict(re.findall(r'^(repo_url|ref)\s*=\s*"([^"]*)"', _section(text), flags=re.M))
    source = CourseSource(values.get("repo_url", ""), values.get("ref") or "main")
    if origin and not source.repo_url:
        remote = CourseSource(_origin(root), source.ref)
        source = remote if remote.github else source
    return source


def write_source(root: Path, source: CourseSource) -> None:
    """Store the setting in pyproject.toml's [tool.tutor] section (created when missing)."""
    path = root / "pyproject.toml"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    body = (f'# Where Colab notebooks install tutor_lib from; set with `tutor release --repo-url URL --ref REF`.\n'
            f'repo_url = "{source.repo_url}"\nref = "{source.ref}"\n')
    old = _section(text)
    if old:
        text = text.replace(_SECTION + "\n" + old, _SECTION + "\n" + body, 1)
    else:
        text = text.rstrip("\n") + f"\n\n{_SECTION}\n{body}"
    path.write_text(text, encoding="utf-8")


def _section(text: str) -> str:
    """The body of [tool.tutor] (up to the next table header), or ""."""
    start = text.find(_SECTION + "\n")
    if start < 0:
        return ""
    body = text[start + len(_SECTION) + 1 :]
    end = re.search(r"^\[", body, flags=re.M)
    return body[: end.start()] if end else body


def _origin(root: Path) -> str:
    proc = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


# -- the setup cell -----------------------------------------------------------------------------

def install_block(source: CourseSource) -> str:
    """The setup cell's first part: on Colab, install tutor_lib at the release's ref (once per runtime)."""
    if not source.repo_url:
        return f'''# Setup. On Google Colab this would install tutor_lib, but this copy of the course was released
# without a repository URL: ask your instructor for the course's Colab link.
import sys
if "google.colab" in sys.modules:
    raise SystemExit("This notebook does not say where tutor_lib lives: ask your instructor for the course's Colab link "
                     "(instructors: `tutor release --repo-url URL`).")
{INSTALL_END}'''
    return f'''# Setup. On Google Colab this installs tutor_lib at the course's release (once per runtime, under a
# minute); elsewhere it is already installed. Running it again is instant.
import sys
COURSE = "{source.pip_url}"
if "google.colab" in sys.modules:
    import importlib, importlib.metadata, json, subprocess, time
    try:
        _installed = json.loads(importlib.metadata.distribution("tutor-lib").read_text("direct_url.json") or "{{}}")
    except importlib.metadata.PackageNotFoundError:
        _installed = {{}}
    if f'git+{{_installed.get("url")}}@{{_installed.get("vcs_info", {{}}).get("requested_revision")}}' == COURSE:
        print(f"tutor_lib is installed from {{COURSE}}")
    else:
        _start = time.perf_counter()  # pip keeps Colab's torch, numpy and matplotlib: they satisfy tutor_lib's ranges
        _pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"tutor-lib @ {{COURSE}}"],
                              capture_output=True, text=True)
        if _pip.returncode != 0:
            _why = (_pip.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"Could not install tutor_lib from {{COURSE}} ({{_why}}). Check that the runtime is "
                             "connected to the internet, or ask your instructor for the course's current link.")
        importlib.invalidate_caches()
        print(f"Installed tutor_lib from {{COURSE}} in {{time.perf_counter() - _start:.0f}} s")
{INSTALL_END}'''


def setup_source(cell_source: str, source: CourseSource) -> str:
    """A setup cell's source with its install block regenerated for `source`; the rest stays."""
    if INSTALL_END in cell_source:
        rest = cell_source.split(INSTALL_END, 1)[1].lstrip("\n")
    else:  # an older cell: everything up to the first blank line was the install block
        rest = cell_source.split("\n\n", 1)[1] if "\n\n" in cell_source else cell_source
    return install_block(source) + "\n\n" + rest


def rewrite_setup_cells(notebooks: list[Path], source: CourseSource) -> list[Path]:
    """Regenerate the install block of each notebook's `setup` cell (if any); returns the notebooks that changed."""
    import nbformat

    changed = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.get("id") == "setup"]
        if not cells:  # not one of the course's notebooks: nothing to install from
            continue
        new = setup_source(cells[0].source, source)
        if new != cells[0].source:
            cells[0].source = new
            nbformat.write(nb, path)
            changed.append(path)
    return changed


# -- the README's badges ------------------------------------------------------------------------

BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
_NOTE = re.compile(r"<!-- colab-note -->.*?<!-- /colab-note -->", flags=re.S)
_CELL = re.compile(r"(\[[^\]]*\]\((notebooks/[\w./-]+\.ipynb)\)[^\n]*\| )(?:\[!\[Open In Colab\][^\n]*?\)\]\([^)\n]*\)|-) \|$",
                   flags=re.M)


def rewrite_readme(text: str, source: CourseSource) -> str:
    """Point every notebook row's Colab badge at `source` (no GitHub: no badge) and update the colab note."""
    github = source.github

    def cell(match: re.Match) -> str:
        if not github:
            return f"{match[1]}- |"
        owner, name = github
        return f"{match[1]}{BADGE}(https://colab.research.google.com/github/{owner}/{name}/blob/{source.ref}/{match[2]}) |"

    text = _CELL.sub(cell, text)
    if github:
        note = f"click a notebook's badge in the table above (it opens `{'/'.join(github)}` at `{source.ref}`)."
    elif source.repo_url:
        note = (f"Colab cannot open `{source.repo_url}` directly: download a notebook from `notebooks/`, then in "
                "Colab choose *File > Upload notebook*.")
    else:
        note = ("this copy of the course has no repository URL yet, so there are no badges: ask your instructor for "
                "the course's Colab links (instructors: `tutor release --repo-url https://github.com/OWNER/REPO`).")
    return _NOTE.sub(f"<!-- colab-note -->{note}<!-- /colab-note -->", text)
