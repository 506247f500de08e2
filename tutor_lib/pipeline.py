"""The main job: data -> stage 1 -> stage 2 -> evaluation -> figures and a JSON report.

    tutor run                 # the seed's configuration, about half a minute on a laptop CPU
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
from .evaluate import accuracy_table, answer_questions, evaluate
from .model import ModelConfig, MultimodalModel, count_parameters
from .runtime import pick_device, seed_everything
from .train import train_stage1, train_stage2
from .vocab import COLORS, POSITIONS, SHAPES

REPORT_VERSION = 1
FIGURES = ("loss_curves.png", "samples.png", "predictions.png")


@dataclass
class RunConfig:
    seed: int = 42
    device: str | None = None  # None: CUDA if available, else MPS, else CPU
    stage1_epochs: int = 30
    stage2_epochs: int = 50
    stage1_lr: float = 1e-3
    stage2_lr: float = 5e-4
    batch_size: int = 32
    n_train: int = 600
    n_test: int = 120  # IID test: the 24 training configurations, fresh noise
    n_heldout: int = 120  # the 6 held-out (color, shape, position) configurations
    output: str = "outputs"
    progress: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)


QUICK = {"stage1_epochs": 2, "stage2_epochs": 3, "n_train": 96, "n_test": 30, "n_heldout": 30}


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

    common = {"batch_size": cfg.batch_size, "progress": cfg.progress, "verbose": True}
    stage1, stage1_s = _timed(train_stage1, model, splits.train, cfg.stage1_epochs, lr=cfg.stage1_lr,
                              seed=cfg.seed, **common)
    stage1_trainable = count_parameters(model, trainable_only=True)
    stage2, stage2_s = _timed(train_stage2, model, splits.train, cfg.stage2_epochs, lr=cfg.stage2_lr,
                              seed=cfg.seed + 1, **common)
    stage2_trainable = count_parameters(model, trainable_only=True)

    start = time.perf_counter()
    accuracy = {"test_iid": evaluate(model, splits.test_iid), "test_heldout": evaluate(model, splits.test_heldout)}
    eval_s = time.perf_counter() - start
    print("\nExact-match accuracy of greedy answers:")
    print(accuracy_table({"IID test": accuracy["test_iid"], "held-out test": accuracy["test_heldout"]}))

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
        "seconds": {"data": data_s, "stage1": stage1_s, "stage2": stage2_s, "evaluation": eval_s,
                    "figures": figures_s, "total": data_s + stage1_s + stage2_s + eval_s + figures_s},
        "losses": {"stage1": stage1, "stage2": stage2},
        "accuracy": accuracy,
        "figures": list(FIGURES),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nSeconds: stage 1 {stage1_s:.1f}, stage 2 {stage2_s:.1f}, evaluation {eval_s:.1f}")
    print(f"Wrote {', '.join(FIGURES)} and report.json to {out}/")
    return report


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
