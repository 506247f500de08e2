"""`tutor setup`: the student's environment, with Validate and without nbgrader's instructor tools."""

from __future__ import annotations

import json

import pytest

from tutor_lib import student
from tutor_lib.cli import main


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A Jupyter configuration folder read before every other (as this environment's would be)."""
    folder = tmp_path / "etc-jupyter"
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(folder))
    return folder


def test_hide_and_show_instructor_tools(config_dir):
    (config_dir / "labconfig").mkdir(parents=True)
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {"other:x": True}}))
    student.hide_instructor_tools(config_dir)
    server, disabled = student.jupyter_state()
    for name in student.INSTRUCTOR_SERVER_EXTENSIONS:
        assert server[name] is False, name
    assert server[student.VALIDATE_SERVER_EXTENSION] is True
    assert set(student.INSTRUCTOR_LAB_PLUGINS) <= disabled and student.VALIDATE_LAB_PLUGIN not in disabled
    assert "other:x" in disabled  # someone else's setting is kept
    student.hide_instructor_tools(config_dir)  # idempotent
    student.hide_instructor_tools(config_dir, hide=False)
    server, disabled = student.jupyter_state()
    assert all(server[name] for name in student.INSTRUCTOR_SERVER_EXTENSIONS)
    assert not set(student.INSTRUCTOR_LAB_PLUGINS) & disabled and "other:x" in disabled


def test_setup_student_checks_without_training(config_dir, root, capsys):
    assert student.setup_student(root, config_dir=config_dir) == 0
    out = capsys.readouterr().out
    assert "Hid nbgrader's instructor tools" in out
    for line in ("✓ Python", "✓ PyTorch", "stage-0 weights loaded and one forward pass", "✓ JupyterLab",
                 "the Validate button is enabled", "✓ nbgrader's instructor tools are hidden", "✓ course folder"):
        assert line in out, (line, out)
    assert "✗" not in out and "Ready. Start JupyterLab from the course folder" in out


def test_setup_outside_the_course_folder_says_how_to_fix(config_dir, tmp_path, capsys):
    assert student.setup_student(tmp_path, config_dir=config_dir) == 1
    out = capsys.readouterr().out
    assert "✗ course folder" in out and "the one with nbgrader_config.py" in out and "Not ready" in out


def test_cli_setup_parses(monkeypatch, root):
    calls = []
    monkeypatch.setattr(student, "setup_student", lambda course, keep_instructor_tools: calls.append(
        (course, keep_instructor_tools)) or 0)
    assert main(["setup", "--course-dir", str(root), "--keep-instructor-tools"]) == 0
    assert calls == [(root, True)]


def test_every_notebook_links_to_the_next(root):
    """Issue 11.6: a student can walk the series 01 -> 02 -> ... by the Next link at the end of each notebook."""
    from tutor_lib.course import list_assignments

    names = list_assignments(root)
    assert len(names) >= 8, names
    for here, there in zip(names, names[1:]):
        text = (root / "solutions" / here / f"{here}.ipynb").read_text()
        assert f"**Next:** [{there}](../{there}/{there}.ipynb)" in text, f"{here} has no Next link to {there}"
