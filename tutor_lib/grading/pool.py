"""Grading processes: N long-lived `python -m tutor_lib.grading.worker` processes fed job files, each job
with a deadline after which its process is killed with every kernel and process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO

from ..course import venv_env

WORKER = [sys.executable, "-m", "tutor_lib.grading.worker"]


def grading_env() -> dict:
    """The workers' environment: quick demo training, this Python's tools on PATH, one thread per kernel."""
    env = venv_env()
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
        except (OSError, AttributeError):
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


def _start(env: dict, log: IO[bytes]) -> subprocess.Popen:
    return subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                            start_new_session=True)


def run_jobs(job_files: list[Path], workers: int, timeout: float, log: IO[bytes]) -> Iterator[tuple[int, str]]:
    """Grade the job files, `workers` at a time; yield (index, outcome) as each ends: 'done', 'timeout'
    (killed after `timeout` seconds), 'crashed' (the process died) or 'error: ...' (it could not start).

    Each pool thread keeps one grading process for job after job (its start, importing nbgrader and torch,
    costs seconds), hands it a job file on stdin and reads `done` back, with a watchdog timer that kills
    the process and everything it started when the job runs past `timeout`. Stopping early (Ctrl-C)
    kills every process.
    """
    env, procs, lock, stopping, local = grading_env(), [], threading.Lock(), threading.Event(), threading.local()

    def run(job_file: Path) -> str:
        proc = getattr(local, "proc", None)
        if proc is None or proc.poll() is not None:
            with lock:
                if stopping.is_set():
                    return "crashed"
                proc = local.proc = _start(env, log)
                procs.append(proc)
        expired = threading.Event()
        watchdog = threading.Timer(timeout, lambda: (expired.set(), kill_tree(proc.pid)))
        watchdog.start()
        try:
            proc.stdin.write(f"{job_file}\n".encode())
            proc.stdin.flush()
            answer = proc.stdout.readline()
        except OSError:
            answer = b""
        finally:
            watchdog.cancel()
        if answer.strip() == b"done" and not expired.is_set():
            return "done"
        kill_tree(proc.pid)
        proc.wait()
        local.proc = None
        return "timeout" if expired.is_set() else "crashed"

    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grading")
    futures = {executor.submit(run, path): index for index, path in enumerate(job_files)}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)  # short: Ctrl-C stays responsive
            for future in done:
                try:
                    outcome = future.result()
                except Exception as error:  # could not start the process: reported per submission
                    outcome = f"error: {error!r}"
                yield futures[future], outcome
        with lock:
            stopping.set()
        for proc in procs:  # all jobs done: end of input lets each process exit
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
    finally:
        with lock:
            stopping.set()
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.poll() is None:
                kill_tree(proc.pid)
