"""Device, threads and seeding: what every notebook's setup cell does; and the autograder's quick mode."""

from __future__ import annotations

import os
import random
import time

import numpy as np
import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when available, else MPS when available, else CPU.

    The TUTOR_DEVICE environment variable overrides the automatic choice, so a grader or CI
    can pin every notebook to the CPU without editing it.
    """
    device = device or os.environ.get("TUTOR_DEVICE") or None
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was requested but MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 42) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


# Our models are tiny (a batch is 32 x ~70 tokens of width 64): a second CPU thread buys little on a
# quiet machine and costs a lot on a busy one, where threads wait for each other (measured with
# benchmarks/cpu_threads.py, see the README). One thread also gives the same digits on every machine
# with the same PyTorch build, so the numbers quoted in the notebooks are the ones a student sees.
DEFAULT_THREADS = 1


def cpu_threads_wanted(threads: int | None = None) -> int:
    """The intra-op CPU thread count for setup(): `threads`, else $TUTOR_THREADS, else DEFAULT_THREADS."""
    if threads is None:
        text = os.environ.get("TUTOR_THREADS", "").strip()
        if not text:
            return DEFAULT_THREADS
        try:
            threads = int(text)
        except ValueError:
            raise ValueError(f"TUTOR_THREADS must be a whole number of CPU threads, got {text!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    return threads


def setup(seed: int = 42, device: str | None = None, threads: int | None = None) -> torch.device:
    """Seed everything, pick the device, use `threads` CPU threads (default 1, $TUTOR_THREADS) and print
    one line about all three; returns the device. Under nbgrader's Validate it also makes a cell that
    ran past the per-cell time limit visible (see watch_for_timeouts)."""
    n = cpu_threads_wanted(threads)
    torch.set_num_threads(n)
    seed_everything(seed)
    chosen = pick_device(device)
    name = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else chosen.type
    mode = ", quick mode (demo training shortened)" if quick_mode() else ""
    print(f"PyTorch {torch.__version__} on {name}, {n} CPU thread{'s' if n > 1 else ''}, seed {seed}{mode}")
    if os.environ.get("NBGRADER_EXECUTION") == "validate":
        watch_for_timeouts()
    return chosen


def quick_mode() -> bool:
    """True in the autograder's fast mode for demo training cells.

    TUTOR_QUICK=1 turns it on and TUTOR_QUICK=0 off. Unset, it is on while nbgrader runs the
    notebook (NBGRADER_EXECUTION is "validate" or "autograde"), so Validate and `tutor grade` run
    the same, short, demo training; graded cells never depend on it.
    """
    text = os.environ.get("TUTOR_QUICK", "").strip().lower()
    if text:
        return text in ("1", "true", "yes")
    return os.environ.get("NBGRADER_EXECUTION", "") in ("validate", "autograde")


def epochs(n: int, quick: int = 2) -> int:
    """n epochs normally, `quick` in quick mode (graded cells never depend on this)."""
    return min(n, quick) if quick_mode() else n


class CellTimedOut(Exception):
    """Raised at the start of every cell after one that nbgrader stopped at its per-cell time limit."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def watch_for_timeouts(shell=None) -> bool:
    """In an IPython kernel: once a cell ends in KeyboardInterrupt (how nbgrader stops a cell at its time
    limit), every later cell fails with a message that names it. Without this, Validate reports only
    test cells, so a demo cell stopped at the limit went unseen. Returns False outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or getattr(shell, "_tutor_timeout_watch", None) is not None:
        return shell is not None
    state = {"start": 0.0, "stopped": None}
    shell._tutor_timeout_watch = state

    def pre_run_cell(info=None) -> None:
        state["start"] = time.monotonic()

    def post_run_cell(result) -> None:
        if state["stopped"] is None and isinstance(result.error_in_exec, KeyboardInterrupt):
            first_line = next((line for line in (result.info.raw_cell if result.info else "").splitlines()
                               if line.strip() and not line.lstrip().startswith("#")), "")
            state["stopped"] = (result.execution_count, time.monotonic() - state["start"], first_line.strip())

    def stop_later_cells(lines: list[str]) -> list[str]:
        if state["stopped"] is None:
            return lines
        count, seconds, first_line = state["stopped"]
        message = (f"cell [{count}], which starts `{first_line[:60]}`, was stopped after {seconds:.0f} s, at the time limit per "
                   "cell in nbgrader_config.py; the grader stops it too. Make it faster (is a loop endless? are "
                   "you training more than the notebook asks?); Validate cannot check the cells after it until then.")
        return [f"raise __import__('tutor_lib.runtime').runtime.CellTimedOut({message!r})\n", *lines]

    shell.events.register("pre_run_cell", pre_run_cell)
    shell.events.register("post_run_cell", post_run_cell)
    shell.input_transformers_post.append(stop_later_cells)
    return True
