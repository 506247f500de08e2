"""Grading into a real PostgreSQL server, as the README writes the URL (postgresql://grader@host/llava).

The test starts a throwaway server (Debian's `postgresql` package: initdb and pg_ctl, found on PATH or
under /usr/lib/postgresql/*/bin) in a temporary folder on a free port, and skips, saying why, when it
cannot: no server binaries, no psycopg driver (the `postgres` extra), or root without a user to run it as.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from grading_support import entries, make_course, points, solved, submit, tutor

pytestmark = pytest.mark.slow

A = "fx1_loss"
WRONG = "def token_nll(logits, targets):\n    return torch.zeros(len(targets))"


def _server_binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server with superuser `grader` and an empty database `llava`; yields its base URL."""
    psycopg = pytest.importorskip("psycopg", reason="no PostgreSQL driver: pip install -e '.[postgres]'")
    bin_dir = _server_binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb): apt-get install postgresql to run this test")
    run_as = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # initdb refuses root: run the server as nobody
        if not shutil.which("runuser"):
            pytest.skip("running as root and no runuser to start PostgreSQL as another user")
        run_as = ["runuser", "-u", "nobody", "--"]
    folder = Path(tempfile.mkdtemp(prefix="tutor-pg-"))
    data, port = folder / "data", _free_port()
    if run_as:
        shutil.chown(folder, "nobody")
    try:
        def pg(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=120)

        init = pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {(init.stderr or init.stdout).strip().splitlines()[-1:]}")
        start = pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
                   "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        if start.returncode != 0:
            log = (folder / "server.log").read_text(errors="replace") if (folder / "server.log").exists() else ""
            pytest.skip(f"PostgreSQL did not start: {(start.stderr + log).strip().splitlines()[-1:]}")
        with psycopg.connect(f"postgresql://grader@127.0.0.1:{port}/postgres", autocommit=True) as db:
            db.execute("CREATE DATABASE llava")
        yield f"postgresql://grader@127.0.0.1:{port}"
    finally:
        if data.exists():
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_grading_into_postgresql(postgres, tmp_path):
    import psycopg

    url = f"{postgres}/llava"
    # First grader: the URL in nbgrader_config.py (formgrader's setting), no --db.
    first = make_course(tmp_path / "first", cell_timeout=120)  # no timeouts tested here: a loaded machine is fine
    with (first / "nbgrader_config.py").open("a") as config:
        config.write(f"\nc.CourseDirectory.db_url = {url!r}\n")
    submit(first, "alice", A, solved(first, A))
    submit(first, "bob", A, solved(first, A, token_nll=WRONG))
    proc = tutor("grade", "--workers", "2", "--no-progress", cwd=first)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {k: e["total"] for k, e in entries(first).items()} == {("alice", A): 5, ("bob", A): 0}
    with sqlite3.connect(first / "gradebook.db") as db:  # make_course's release wrote it; grades went to PostgreSQL
        assert db.execute("SELECT count(*) FROM submitted_assignment").fetchone() == (0,)

    # Second grader: another folder, the README's --db flag.
    second = make_course(tmp_path / "second", cell_timeout=120)
    submit(second, "carol", A, solved(second, A, token_nll=WRONG, masked_mean_nll=None))
    proc = tutor("grade", "--db", url, "--no-progress", cwd=second)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    with psycopg.connect(url) as db:
        rows = db.execute("""
            SELECT student.id, base_cell.name, grade.auto_score FROM grade
            JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id
            JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id
            JOIN student ON submitted_assignment.student_id = student.id
            JOIN base_cell ON grade.cell_id = base_cell.id""").fetchall()
    stored = {(s, cell): score for s, cell, score in rows}
    assert stored == {("alice", "test_token_nll"): 2, ("alice", "test_masked_mean_nll"): 3,
                      ("bob", "test_token_nll"): 0, ("bob", "test_masked_mean_nll"): 0,
                      ("carol", "test_token_nll"): 0, ("carol", "test_masked_mean_nll"): 0}

    proc = tutor("report", cwd=first)  # the whole gradebook, both graders' students
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = entries(first)
    assert {k: e["total"] for k, e in found.items()} == {("alice", A): 5, ("bob", A): 0, ("carol", A): 0}
    assert points(found[("carol", A)]) == {"test_token_nll": 0, "test_masked_mean_nll": 0}


def test_a_missing_database_on_a_real_server_is_one_line(postgres, tmp_path):
    course = make_course(tmp_path / "course", cell_timeout=120)
    submit(course, "alice", A, solved(course, A))
    proc = tutor("grade", "--db", f"{postgres}/nope", "--no-progress", cwd=course)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tutor grade: error: cannot open the gradebook {postgres}/nope: "), err
    assert 'database "nope" does not exist' in err[0], err
