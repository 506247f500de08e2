"""How many CPU threads should the notebooks use? Times 3 stage-1 epochs (notebook 05's demo on the
pretrained parts, 600 images, batch 32) in fresh processes, with PyTorch's default threads and with
one thread, on a quiet CPU and next to one competing process (a busy loop, the kind of load a second
notebook or a test run puts on a laptop). Configurations alternate, so slow drift hits all alike.

    python benchmarks/cpu_threads.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import sys, time, torch
threads = int(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
from tutor_lib import make_splits, seed_everything, train_stage1
from tutor_lib.pretrain import pretrained_model
splits = make_splits(n_train=600, n_test=8, n_heldout=8, seed=42)
seed_everything(42)
model = pretrained_model()
train_stage1(model, splits.train, num_epochs=1, batch_size=32, lr=1e-3, progress=False)  # warm-up
start = time.perf_counter()
losses = train_stage1(model, splits.train, num_epochs=3, batch_size=32, lr=1e-3, progress=False)
print(time.perf_counter() - start, torch.get_num_threads(), losses[-1])
"""

BUSY = "while True: pass"


def run(threads: int) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS="" if not threads else str(threads)))
    seconds, used, _ = out.stdout.splitlines()[-1].split()
    return float(seconds), int(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    configs = [(competing, threads) for competing in (False, True) for threads in (0, 1)]
    times: dict[tuple[bool, int], list[float]] = {c: [] for c in configs}
    used: dict[tuple[bool, int], int] = {}
    print(f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.repeats):
        for competing, threads in configs:
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if competing else None
            try:
                if busy:
                    time.sleep(0.5)
                seconds, used[(competing, threads)] = run(threads)
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
            times[(competing, threads)].append(seconds)
            print(f"repeat {r + 1}: competing={competing!s:<5} threads={used[(competing, threads)]} {seconds:.2f} s", flush=True)
    print(f"\n3 stage-1 epochs, median of {args.repeats} (min-max), load average after: {os.getloadavg()[0]:.2f}")
    for competing, threads in configs:
        t = times[(competing, threads)]
        label = f"{'default (' + str(used[(competing, threads)]) + ')' if not threads else '1'} thread(s)"
        print(f"  {'one competing process' if competing else 'quiet':<22} {label:<20} "
              f"{statistics.median(t):6.2f} s  ({min(t):.2f}-{max(t):.2f})")


if __name__ == "__main__":
    main()
