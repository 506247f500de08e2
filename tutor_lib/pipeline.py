"""The main job: stage 0 -> data -> stage 1 -> stage 2 -> evaluation -> figures and a JSON report.

    tutor run                 # the seed's configuration on pretrained parts, about half a minute on a laptop CPU
    tutor run --from-scratch  # the same with a random vision encoder and language model, for comparison
    tutor run --quick         # a few-second smoke run
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

from .data import HELD_OUT_CONFIGS, make_splits
from .evaluate import accuracy_table, answer_questions, caption_accuracy, evaluate
from .model import ModelConfig, MultimodalModel, count_parameters
from .pretrain import load_stage0
from .runtime import pick_device, seed_everything
from .train import Recipe, train_stage1, train_stage2
from .vocab import COLORS, POSITIONS, SHAPES

REPORT_VERSION = 2
FIGURES = ("loss_curves.png", "samples.png", "predictions.png")


@dataclass(frozen=True)
class RunConfig(Recipe):
    """One run of the main job: the seed's recipe (train.RECIPE's fields) plus where and how to run it."""

    seed: int = 42
    device: str | None = None  # None: CUDA, then MPS, then CPU (runtime.pick_device)
    output: str = "outputs"
    progress: bool = True
    from_scratch: bool = False  # True: random vision encoder and language model, as in the seed
    stage0_seed: int = 42  # the pretrained parts, shared by every run seed as one checkpoint is in practice
    model: ModelConfig = field(default_factory=ModelConfig)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def run_pipeline(cfg: RunConfig) -> dict:
    """Train both stages, print progress and an accuracy table, save figures and report.json."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    print(f"Device: {device} | seed {cfg.seed} | output folder: {out}")

    splits, data_s = _timed(make_splits, cfg.n_train, cfg.n_test, cfg.n_heldout,
                            image_size=cfg.model.image_size, seed=cfg.seed)
    print(f"Data: {len(splits.train)} train, {len(splits.test_iid)} IID test, "
          f"{len(splits.test_heldout)} held-out test samples ({data_s:.2f} s)")
    model = MultimodalModel(cfg.model).to(device)
    stage0 = _stage0(model, cfg)

    common = {"batch_size": cfg.batch_size, "progress": cfg.progress, "verbose": True}
    stage1, stage1_s = _timed(train_stage1, model, splits.train, cfg.stage1_epochs, lr=cfg.stage1_lr,
                              seed=cfg.seed, **common)
    stage1_trainable = count_parameters(model, trainable_only=True)
    after_stage1 = _scores(model, splits)
    print("\nAfter stage 1: greedy captions, and questions answered zero-shot (never trained on):")
    print(accuracy_table({_NAMES[k]: v for k, v in after_stage1.items()}))
    stage2, stage2_s = _timed(train_stage2, model, splits.train, cfg.stage2_epochs, lr=cfg.stage2_lr,
                              seed=cfg.seed + 1, **common)
    stage2_trainable = count_parameters(model, trainable_only=True)

    accuracy, eval_s = _timed(_scores, model, splits)
    print("\nExact-match accuracy of greedy answers (and captions), after stage 2:")
    print(accuracy_table({_NAMES[k]: v for k, v in accuracy.items()}))

    figures_s = _save_figures(model, splits, {"stage1": stage1, "stage2": stage2}, out)
    report = {
        "version": REPORT_VERSION,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("model", "progress")},
        "model": asdict(cfg.model),
        "device": str(device),
        "torch": __import__("torch").__version__,
        "python": platform.python_version(),
        "held_out_configs": [f"{COLORS[c]} {SHAPES[s]} {POSITIONS[p]}" for c, s, p in HELD_OUT_CONFIGS],
        "parameters": {"total": count_parameters(model), "stage1_trainable": stage1_trainable,
                       "stage2_trainable": stage2_trainable},
        "stage0": stage0,
        "seconds": {"stage0": stage0["seconds"], "data": data_s, "stage1": stage1_s, "stage2": stage2_s,
                    "evaluation": eval_s, "figures": figures_s,
                    "total": stage0["seconds"] + data_s + stage1_s + stage2_s + eval_s + figures_s},
        "losses": {"stage1": stage1, "stage2": stage2},
        "after_stage1": after_stage1,
        "accuracy": accuracy,
        "figures": list(FIGURES),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nSeconds: stage 0 {stage0['seconds']:.1f} ({stage0['source']}), stage 1 {stage1_s:.1f}, "
          f"stage 2 {stage2_s:.1f}, evaluation {eval_s:.1f}")
    print(f"Wrote {', '.join(FIGURES)} and report.json to {out}/")
    return report


_NAMES = {"test_iid": "IID test", "test_heldout": "held-out test"}


def _scores(model, splits) -> dict:
    """Caption exact match and per-question-type accuracy on both test splits."""
    return {key: {"caption": caption_accuracy(model, split), **evaluate(model, split)}
            for key, split in (("test_iid", splits.test_iid), ("test_heldout", splits.test_heldout))}


def _stage0(model, cfg: RunConfig) -> dict:
    """Load (or build once) the pretrained parts; a summary for the report."""
    if cfg.from_scratch:
        print("Stage 0 skipped (--from-scratch): the vision encoder and the language model stay random")
        return {"source": "from scratch (random parts)", "seconds": 0.0, "build_seconds": None, "final_losses": None}
    info, seconds = _timed(load_stage0, model, cfg.stage0_seed, progress=cfg.progress)
    built_now = info["source"].startswith("trained now")
    return {"source": "trained now" if built_now else "loaded from cache", "file": info["source"],
            "seed": cfg.stage0_seed, "seconds": seconds, "build_seconds": info["seconds"],
            "final_losses": {k: v[-1] for k, v in info["losses"].items()}}


def _save_figures(model, splits, losses, out: Path) -> float:
    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    from .plots import plot_loss_curves, plot_predictions, plot_samples

    start = time.perf_counter()
    # Predictions on a mix of IID and held-out samples, so both kinds of mistake can show.
    mixed = [splits.test_iid[i] for i in range(min(10, len(splits.test_iid)))]
    mixed += [splits.test_heldout[i] for i in range(min(5, len(splits.test_heldout)))]
    figures = {
        "loss_curves.png": plot_loss_curves(losses),
        "samples.png": plot_samples(splits.train, n=10),
        "predictions.png": plot_predictions(
            model, mixed, n=15, answers=answer_questions(model, mixed),
            title="Greedy answers (green: right, red: wrong); bottom row: held-out combinations"),
    }
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
    return time.perf_counter() - start
