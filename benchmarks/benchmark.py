"""Time the reference two-stage pipeline against the seed notebook's, side by side.

    python benchmarks/benchmark.py                 # 3 interleaved runs each on the CPU (about 5 minutes)
    python benchmarks/benchmark.py --repeats 5     # more runs, tighter medians
    python benchmarks/benchmark.py --no-seed       # ours only, on the CPU and (if present) CUDA

Each run is a fresh process that does the whole job: generate the data, get the stage-0
pretrained parts (ours only: loaded from the shipped cache, or trained from nothing), train
stage 1 and stage 2 at the seed's configuration (600 samples, 30 + 50 epochs, batch 32), and
evaluate. Runs alternate (seed, ours cached, ours built, seed, ...) so all see the same load.
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


def ours(device: str, stage0: str = "cache", seed: int = 42) -> dict:
    """One whole job with tutor_lib, timed by phase; stage0 is "cache" (shipped weights) or "build" (from nothing)."""
    import torch

    from tutor_lib.data import make_splits
    from tutor_lib.evaluate import caption_accuracy, evaluate
    from tutor_lib.model import MultimodalModel
    from tutor_lib.pretrain import build_stage0, load_stage0
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
    if stage0 == "build":
        weights = build_stage0(device=device, progress=False)
        model.vision_encoder.load_state_dict(weights["vision_encoder"])
        model.language_model.load_state_dict(weights["language_model"])
    else:
        load_stage0(model, verbose=False)
    sync()
    t2 = time.perf_counter()
    train_stage1(model, splits.train, 30, progress=False, seed=seed)
    sync()
    t3 = time.perf_counter()
    captions = caption_accuracy(model, splits.test_iid), caption_accuracy(model, splits.test_heldout)
    t4 = time.perf_counter()
    train_stage2(model, splits.train, 50, progress=False, seed=seed + 1)
    sync()
    t5 = time.perf_counter()
    iid, heldout = evaluate(model, splits.test_iid), evaluate(model, splits.test_heldout)
    t6 = time.perf_counter()
    return {"data_s": t1 - t0, "stage0_s": t2 - t1, "stage1_s": t3 - t2, "stage2_s": t5 - t4,
            "eval_s": t6 - t5 + t4 - t3, "total_s": t6 - t0, "caption_iid": captions[0], "caption_heldout": captions[1],
            "test_accuracy": iid["overall"], "heldout_accuracy": heldout["overall"]}


def _in_subprocess(kind: str, device: str, stage0: str = "cache") -> dict:
    call = f"benchmark.ours({device!r}, {stage0!r})" if kind == "ours" else "seed_pipeline.main()"
    code = f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import benchmark, seed_pipeline; print(json.dumps({call}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(name: str, runs: list[dict]) -> dict:
    keys = tuple(k for k in ("data_s", "stage0_s", "stage1_s", "stage2_s", "eval_s", "total_s") if k in runs[0])
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    line = "  ".join(f"{k[:-2]} {med[k]:6.2f}s" for k in keys)
    rates = "  ".join(f"{s} {SAMPLES_PER_STAGE[s] / med[s + '_s']:7.0f} samples/s" for s in SAMPLES_PER_STAGE)
    accuracy = ", ".join(f"{k} {statistics.median(r[k] for r in runs):.1%}"
                         for k in ("caption_iid", "caption_heldout", "test_accuracy", "heldout_accuracy") if k in runs[0])
    totals = ", ".join(f"{r['total_s']:.1f}" for r in runs)
    print(f"{name}\n  {line}\n  {rates}\n  {accuracy}  (median of {len(runs)}; totals {totals} s)")
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-seed", action="store_true", help="skip the seed notebook's pipeline")
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    runs: dict[str, list[dict]] = {"seed (cpu)": [], "ours, stage 0 cached (cpu)": [], "ours, stage 0 built (cpu)": []}
    for _ in range(args.repeats):
        if not args.no_seed:
            runs["seed (cpu)"].append(_in_subprocess("seed", "cpu"))
        runs["ours, stage 0 cached (cpu)"].append(_in_subprocess("ours", "cpu", "cache"))
        runs["ours, stage 0 built (cpu)"].append(_in_subprocess("ours", "cpu", "build"))
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for stage0 in ("cache", "build"):
            runs[f"ours, stage 0 {stage0 + 'd' if stage0 == 'cache' else 'built'} ({name})"] = [
                _in_subprocess("ours", "cuda", stage0) for _ in range(args.repeats)]
    medians = {name: _summary(name, r) for name, r in runs.items() if r}
    if not args.no_seed:
        for name in ("ours, stage 0 cached (cpu)", "ours, stage 0 built (cpu)"):
            speedup = medians["seed (cpu)"]["total_s"] / medians[name]["total_s"]
            print(f"whole job on the CPU, {name}: {speedup:.2f}x faster than the seed's pipeline (medians)")


if __name__ == "__main__":
    main()
