"""Time the reference two-stage pipeline against the seed notebook's, side by side.

    python benchmarks/benchmark.py                 # 3 interleaved runs each on the CPU (about 5 minutes)
    python benchmarks/benchmark.py --repeats 5     # more runs, tighter medians
    python benchmarks/benchmark.py --no-seed       # ours only, on the CPU and (if present) CUDA

Each run is a fresh process that does the whole job: generate the data, train stage 1 and
stage 2 at the seed's configuration (600 samples, 30 + 50 epochs, batch 32), and evaluate.
Runs alternate (seed, ours, seed, ours, ...) so that both see the same machine load.
Prints medians of seconds per phase, training samples per second, the speed-up, and accuracy.
This is a benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES_PER_STAGE = {"stage1": 600 * 30, "stage2": 600 * 50}


def ours(device: str, seed: int = 42) -> dict:
    """One whole job with tutor_lib, timed by phase."""
    import torch

    from tutor_lib.data import make_splits
    from tutor_lib.evaluate import evaluate
    from tutor_lib.model import MultimodalModel
    from tutor_lib.runtime import seed_everything
    from tutor_lib.train import train_stage1, train_stage2

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    seed_everything(seed)
    t0 = time.perf_counter()
    splits = make_splits(600, 120, 120, seed=seed)
    t1 = time.perf_counter()
    model = MultimodalModel().to(device)
    train_stage1(model, splits.train, 30, progress=False, seed=seed)
    sync()
    t2 = time.perf_counter()
    train_stage2(model, splits.train, 50, progress=False, seed=seed + 1)
    sync()
    t3 = time.perf_counter()
    iid, heldout = evaluate(model, splits.test_iid), evaluate(model, splits.test_heldout)
    t4 = time.perf_counter()
    return {"data_s": t1 - t0, "stage1_s": t2 - t1, "stage2_s": t3 - t2, "eval_s": t4 - t3, "total_s": t4 - t0,
            "test_accuracy": iid["overall"], "heldout_accuracy": heldout["overall"]}


def _in_subprocess(kind: str, device: str) -> dict:
    call = f"benchmark.ours({device!r})" if kind == "ours" else "seed_pipeline.main()"
    code = f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import benchmark, seed_pipeline; print(json.dumps({call}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(name: str, runs: list[dict]) -> dict:
    keys = ("data_s", "stage1_s", "stage2_s", "eval_s", "total_s")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    line = "  ".join(f"{k[:-2]} {med[k]:6.2f}s" for k in keys)
    rates = "  ".join(f"{s} {SAMPLES_PER_STAGE[s] / med[s + '_s']:7.0f} samples/s" for s in SAMPLES_PER_STAGE)
    accuracy = ", ".join(f"{k} {statistics.median(r[k] for r in runs):.1%}" for k in ("test_accuracy", "heldout_accuracy")
                         if k in runs[0])
    totals = ", ".join(f"{r['total_s']:.1f}" for r in runs)
    print(f"{name:<14} {line}\n{'':<14} {rates}\n{'':<14} {accuracy}  (median of {len(runs)}; totals {totals} s)")
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-seed", action="store_true", help="skip the seed notebook's pipeline")
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    runs: dict[str, list[dict]] = {"seed (cpu)": [], "ours (cpu)": []}
    for _ in range(args.repeats):
        if not args.no_seed:
            runs["seed (cpu)"].append(_in_subprocess("seed", "cpu"))
        runs["ours (cpu)"].append(_in_subprocess("ours", "cpu"))
    if torch.cuda.is_available():
        runs[f"ours ({torch.cuda.get_device_name(0)})"] = [_in_subprocess("ours", "cuda") for _ in range(args.repeats)]
    medians = {name: _summary(name, r) for name, r in runs.items() if r}
    if not args.no_seed:
        speedup = medians["seed (cpu)"]["total_s"] / medians["ours (cpu)"]["total_s"]
        print(f"\nwhole job on the CPU: ours is {speedup:.2f}x faster than the seed's pipeline (medians)")


if __name__ == "__main__":
    main()
