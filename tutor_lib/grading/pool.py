"""Worker processes for grading: start, hand a job, wait with a deadline, kill with every kernel they started."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO


def grading_env() -> dict:
    """The workers' environment: quick demo training, this Python's tools on PATH, one thread per kernel."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TUTOR_QUICK", "1")  # demo training cells run 2 epochs; graded cells have their own sizes
    # One thread per kernel: the graded models are tiny, so torch's intra-op threads mostly add overhead
    # (measured: 1 worker with 2 threads was 1.7x slower than with 1 on a busy 2-core machine); workers
    # give the parallelism. An instructor's own OMP_NUM_THREADS wins.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(name, "1")
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (kernels run in their own sessions, so a process group is not enough)."""
    try:
        import psutil
    except ImportError:  # psutil comes with ipykernel; without it, the worker's session is the best we can do
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        return
    try:
        root = psutil.Process(pid)
        family = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in family:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=10)


class WorkerProcess:
    """One `python -m tutor_lib.grading.worker`, fed job files one at a time."""

    def __init__(self, env: dict, log: IO[bytes]):
        self.env, self.log = env, log
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "tutor_lib.grading.worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.log, env=self.env, start_new_session=True)
        return self.proc

    def run(self, job_file: Path, timeout: float) -> str:
        """Grade one job: 'done', 'timeout' (the worker was killed) or 'crashed' (it died)."""
        proc = self._start()
        try:
            proc.stdin.write(f"{job_file}\n".encode())
            proc.stdin.flush()
        except OSError:
            self.kill()
            return "crashed"
        deadline, fd = time.monotonic() + timeout, proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                return "timeout"
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                line = os.read(fd, 4096)
                if not line:
                    self.kill()
                    return "crashed"
                if b"\n" in line:
                    return "done"

    def kill(self) -> None:
        """Stop the worker and everything it started (safe to call from two threads at once)."""
        with self._lock:  # the serving thread's close() and the parent's clean-up may race here
            proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                kill_tree(proc.pid)
            proc.wait()

    def close(self) -> None:
        """Let the worker finish (end of input), killing it if it does not within 30 s."""
        proc = self.proc
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()
