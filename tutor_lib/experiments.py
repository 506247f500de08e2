"""Small seeded experiments on the two-stage recipe: the machinery behind notebook 07.

Every experiment trains many small models, so it counts optimizer *steps* rather than epochs:
"skip stage 1 at equal total steps" must give both arms exactly the same number of updates,
whatever the size of their data. One seed fixes everything that is random in a run: the
data (train, IID test and held-out test), the model's initial weights and the batch order.
Arms that share a seed start from identical weights, so their difference is paired.

By default every model starts from stage 0 (`pretrain.load_stage0`): the pretrained vision
encoder and language model, frozen in stage 1 as in LLaVA; only the projector is drawn fresh.
`ExperimentConfig(pretrained=False)` keeps the random parts of the seed notebook instead.

Results are plain dicts ("rows"), one per trained model; `table` turns them into the
(num_seeds, num_x) arrays that `plots.plot_ablation` draws as a mean and a band.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .augment import hflip_dataset, jitter_dataset
from .data import HELD_OUT_CONFIGS, TRAIN_CONFIGS, ShapesDataset, make_splits
from .evaluate import evaluate, generate
from .losses import masked_mean_nll
from .model import MultimodalModel, set_stage
from .pretrain import load_stage0
from .runtime import pick_device
from .train import caption_tensors, instruction_tensors
from .vocab import POSITIONS, QUESTION_TYPES, START


@dataclass(frozen=True)
class ExperimentConfig:
    image_size: int = 32  # 16 visual tokens instead of the seed's 64: a step costs about a quarter
    n_captions: int = 600  # stage-1 (caption) data, also the pool the stage-2 subsets come from
    n_test: int = 150  # IID test samples: the 24 training configurations, fresh noise
    n_heldout: int = 150  # held-out test samples: the 6 configurations never trained on
    stage1_steps: int = 100  # about 5 epochs of 600 captions
    stage2_steps: int = 200  # the seed's stage 2 took 950 steps
    stage1_lr: float = 1e-3  # the seed's rates
    stage2_lr: float = 5e-4
    batch_size: int = 32
    seeds: tuple[int, ...] = (0, 1, 2)
    pretrained: bool = True  # start from stage 0's vision encoder and LM (False: random ones, as in the seed)
    # The stage-0 build is the same for every run seed: many fine-tuning runs share one pretrained
    # checkpoint, so a run seed varies the projector's init, the data and the batch order, never
    # the pretrained parts. 42 is the build shipped in tutor_lib/weights for 32x32 and 64x64 images.
    stage0_seed: int = 42
    device: str | None = None  # None: CUDA if available, else CPU
    # Models this small gain little from a second CPU thread, and on a CPU shared with other
    # work two threads were measured 3-25x slower per step than one. One thread also makes the
    # printed numbers the same on every machine with this PyTorch build. None: PyTorch's default.
    num_threads: int | None = 1


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with n intra-op CPU threads (None: leave as is), then restore the old setting."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _threaded(experiment: Callable) -> Callable:
    """Run an experiment (whose first argument is its ExperimentConfig) under cfg.num_threads threads."""
    @functools.wraps(experiment)
    def run(cfg: ExperimentConfig, *args, **kwargs):
        with cpu_threads(cfg.num_threads):
            return experiment(cfg, *args, **kwargs)
    return run


def fit_steps(model: MultimodalModel, images: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor,
              steps: int, lr: float, batch_size: int = 32, seed: int = 0) -> list[float]:
    """Adam on the trainable parameters for exactly `steps` batches (reshuffled each pass) -> per-step losses."""
    if steps < 0 or batch_size < 1:
        raise ValueError(f"need steps >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: call set_stage(model, 1 or 2) first")
    device = next(model.parameters()).device
    images, input_ids, labels = images.to(device), input_ids.to(device), labels.to(device)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    losses = []
    model.train()
    for _ in range(steps):
        while len(order) < batch_size:  # a batch may straddle two passes through the data
            order = torch.cat([order, torch.randperm(len(images), generator=generator)])
        idx, order = order[:batch_size].to(device), order[batch_size:]
        logits = model(images[idx], input_ids[idx])  # (B, N + L, V)
        loss = masked_mean_nll(logits[:, model.num_patches:], labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def new_model(cfg: ExperimentConfig, seed: int) -> MultimodalModel:
    """A model before stage 1: stage-0 parts (if cfg.pretrained) and a projector drawn from `seed`.

    The same seed always gives the same weights, and the global RNG is left alone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultimodalModel(image_size=cfg.image_size)
        if cfg.pretrained:  # a size without shipped or cached weights is pretrained here once, then cached
            load_stage0(model, seed=cfg.stage0_seed, progress=False, verbose=False)
    return model.to(pick_device(cfg.device))


def run_stage1(model: MultimodalModel, dataset, cfg: ExperimentConfig, seed: int) -> list[float]:
    """Stage 1 for cfg.stage1_steps steps: captions, only the projector trains."""
    set_stage(model, 1)
    return fit_steps(model, *caption_tensors(dataset), cfg.stage1_steps, cfg.stage1_lr, cfg.batch_size, seed)


_ALIGNED: dict[tuple, dict] = {}  # stage-1 weights per (config, seed): every experiment starts from them


def aligned_model(cfg: ExperimentConfig, seed: int) -> MultimodalModel:
    """A new model of this seed after stage 1 on its n_captions training captions (trained once, then cached)."""
    key = (replace(cfg, seeds=()), seed)
    model = new_model(cfg, seed)
    if key not in _ALIGNED:
        run_stage1(model, splits_for(cfg, seed).train, cfg, seed)
        _ALIGNED[key] = copy.deepcopy(model.state_dict())
    model.load_state_dict(_ALIGNED[key])
    return model


def run_stage2(model: MultimodalModel, dataset, cfg: ExperimentConfig, seed: int, steps: int | None = None,
               lr: float | None = None) -> list[float]:
    """Stage 2 for `steps` (default cfg.stage2_steps) steps at `lr` (default cfg.stage2_lr): questions and answers."""
    set_stage(model, 2)
    steps = cfg.stage2_steps if steps is None else steps
    return fit_steps(model, *instruction_tensors(dataset), steps, cfg.stage2_lr if lr is None else lr,
                     cfg.batch_size, seed + 1)


def splits_for(cfg: ExperimentConfig, seed: int):
    """Train (n_captions samples), IID test and held-out test data of one seed."""
    return make_splits(cfg.n_captions, cfg.n_test, cfg.n_heldout, image_size=cfg.image_size, seed=seed)


# -- measurements ------------------------------------------------------------------------------

def qa_scores(model: MultimodalModel, splits) -> dict[str, float]:
    """Exact-match accuracy on both test sets, overall and per question type: {"iid": .., "heldout_color": .., ...}."""
    scores = {}
    for name, dataset in (("iid", splits.test_iid), ("heldout", splits.test_heldout)):
        result = evaluate(model, dataset)
        scores[name] = result["overall"]
        scores.update({f"{name}_{key}": value for key, value in result.items() if key not in ("overall", "n")})
    return scores


@torch.no_grad()
def caption_scores(model: MultimodalModel, dataset) -> dict[str, float]:
    """How well the model still captions: loss on the caption words, and greedy "<color> <shape>" exact match.

    caption_loss is the mean next-token loss (nats) of the color and shape words after
    "<start>", teacher-forced. The caption's <end> is left out on purpose: stage 2 trains
    "<end> after a color or shape word" in every answer, so it would hide the forgetting.
    """
    images, input_ids, labels = caption_tensors(dataset)
    device = next(model.parameters()).device
    logits = model(images.to(device), input_ids.to(device))[:, model.num_patches:]  # (N, 3, V)
    words = labels[:, :2].to(device)  # (N, 2): the color and shape targets
    loss = masked_mean_nll(logits[:, :2], words).item()
    generated = generate(model, images, torch.full((len(images), 1), START), max_new_tokens=3)
    accuracy = float(np.mean([g == c for g, c in zip(generated, dataset.captions)]))
    return {"caption_loss": loss, "caption_acc": accuracy}


def lm_drift(model: MultimodalModel, reference: MultimodalModel) -> float:
    """||w - w_ref|| / ||w_ref|| over all language-model weights: how far stage 2 moved the LM."""
    now = torch.cat([p.detach().flatten() for p in model.language_model.parameters()])
    before = torch.cat([p.detach().flatten() for p in reference.language_model.parameters()])
    return ((now - before).norm() / before.norm()).item()


def coverage(dataset: ShapesDataset) -> int:
    """How many distinct (color, shape, position, question type) combinations the dataset holds (72 possible)."""
    return len(set(zip(dataset.colors.tolist(), dataset.shapes.tolist(), dataset.positions.tolist(),
                       dataset.question_types.tolist())))


def mirrored(config: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (color, shape, position) triple a horizontal flip turns `config` into."""
    c, s, p = config
    swap = {"top-left": "top-right", "top-right": "top-left", "bottom-left": "bottom-right",
            "bottom-right": "bottom-left", "center": "center"}
    return (c, s, POSITIONS.index(swap[POSITIONS[p]]))


# Held-out triples that are the mirror image of a training triple: a flip can synthesise them.
FLIP_REACHABLE = tuple(c for c in HELD_OUT_CONFIGS if mirrored(c) in TRAIN_CONFIGS)


def split_by_configs(dataset: ShapesDataset, configs: Sequence[tuple[int, int, int]]) -> tuple[ShapesDataset, ShapesDataset]:
    """(samples whose triple is in `configs`, the others)."""
    inside = torch.tensor([t in set(configs) for t in zip(dataset.colors.tolist(), dataset.shapes.tolist(),
                                                          dataset.positions.tolist())])
    return dataset.subset(inside.nonzero().flatten()), dataset.subset((~inside).nonzero().flatten())


# -- the experiments ---------------------------------------------------------------------------

@_threaded
def run_data_sweep(cfg: ExperimentConfig, sizes: Sequence[int]) -> list[dict]:
    """Two-stage vs stage 2 only (same total steps) for each stage-2 data size -> one row per model."""
    if max(sizes) > cfg.n_captions:
        raise ValueError(f"stage-2 sizes must be at most n_captions={cfg.n_captions}, got {max(sizes)}")
    rows = []
    for seed in cfg.seeds:
        splits = splits_for(cfg, seed)
        aligned = aligned_model(cfg, seed)
        for n in sizes:
            data = splits.train.subset(range(n))  # nested: the 60 are among the 150, and so on
            two_stage = copy.deepcopy(aligned)
            run_stage2(two_stage, data, cfg, seed)
            rows.append({"seed": seed, "n": n, "arm": "two-stage", **qa_scores(two_stage, splits)})
            direct = new_model(cfg, seed)  # the same initial weights as `aligned` had
            run_stage2(direct, data, cfg, seed, steps=cfg.stage1_steps + cfg.stage2_steps)
            rows.append({"seed": seed, "n": n, "arm": "stage 2 only", **qa_scores(direct, splits)})
    return rows


@_threaded
def run_forgetting(cfg: ExperimentConfig, lrs: Sequence[float], n: int) -> list[dict]:
    """Stage 1, then stage 2 on n samples at each learning rate: captioning, LM drift and QA accuracy -> rows."""
    rows = []
    for seed in cfg.seeds:
        splits = splits_for(cfg, seed)
        before = new_model(cfg, seed)  # stage-0 parts (or random ones) and a fresh projector
        rows.append({"seed": seed, "lr": 0.0, "arm": "before stage 1", **caption_scores(before, splits.test_iid)})
        aligned = aligned_model(cfg, seed)
        rows.append({"seed": seed, "lr": 0.0, "arm": "after stage 1", **caption_scores(aligned, splits.test_iid)})
        for lr in lrs:
            model = copy.deepcopy(aligned)
            run_stage2(model, splits.train.subset(range(n)), cfg, seed, lr=lr)
            rows.append({"seed": seed, "lr": lr, "arm": "after stage 2", **caption_scores(model, splits.test_iid),
                         "lm_drift": lm_drift(model, aligned), **qa_scores(model, splits)})
    return rows


def augment_with_example(dataset: ShapesDataset, example_fn: Callable) -> ShapesDataset:
    """Apply a per-image augmentation example_fn(image, position) -> (image, position) to every sample."""
    images, positions = [], []
    for i in range(len(dataset)):
        image, position = example_fn(dataset.images[i], POSITIONS[int(dataset.positions[i])])
        images.append(image)
        positions.append(POSITIONS.index(position))
    return ShapesDataset(torch.stack(images), dataset.colors.clone(), dataset.shapes.clone(),
                         torch.tensor(positions), dataset.question_types.clone())


def without_color_questions(dataset: ShapesDataset) -> ShapesDataset:
    """The samples whose question is not "what color ?"."""
    return dataset.subset((dataset.question_types != QUESTION_TYPES.index("color")).nonzero().flatten())


Arm = Callable[[ShapesDataset, int], ShapesDataset]  # (the n originals, seed) -> stage-2 training set


def augmentation_arms(example_fn: Callable, jitter_strength: float = 1.0) -> dict[str, Arm]:
    """The stage-2 training sets of the augmentation experiment: the originals plus an augmented copy (or not).

    example_fn(image, position) -> (image, position) is the flip under test (the student's hflip_example).
    """
    def jitter(data: ShapesDataset, seed: int) -> ShapesDataset:
        return jitter_dataset(data, jitter_strength, seed)

    return {
        "none": lambda data, seed: data,
        "flip, swap": lambda data, seed: ShapesDataset.concat([data, augment_with_example(data, example_fn)]),
        "flip, no swap": lambda data, seed: ShapesDataset.concat([data, hflip_dataset(data, swap_labels=False)]),
        "hue jitter": lambda data, seed: ShapesDataset.concat([data, jitter(data, seed)]),
        "hue jitter, no color Qs": lambda data, seed: ShapesDataset.concat([data, jitter(without_color_questions(data), seed)]),
    }


@_threaded
def run_augmentation(cfg: ExperimentConfig, arms: dict[str, Callable], n: int) -> list[dict]:
    """Stage 1, then stage 2 on each arm's version of the same n samples, at equal steps -> rows."""
    rows = []
    for seed in cfg.seeds:
        splits = splits_for(cfg, seed)
        reachable, unreachable = split_by_configs(splits.test_heldout, FLIP_REACHABLE)
        aligned = aligned_model(cfg, seed)
        data = splits.train.subset(range(n))
        for arm, build in arms.items():
            model = copy.deepcopy(aligned)
            run_stage2(model, build(data, seed), cfg, seed)
            rows.append({"seed": seed, "arm": arm, **qa_scores(model, splits),
                         "heldout_mirror": evaluate(model, reachable)["overall"],
                         "heldout_center": evaluate(model, unreachable)["overall"]})
    return rows


# -- turning rows into arrays ------------------------------------------------------------------

def table(rows: Sequence[dict], metric: str, x_key: str, x_values: Sequence, **where) -> np.ndarray:
    """Values of `metric` as an array (num_seeds, len(x_values)), for the rows matching `where`."""
    chosen = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    seeds = sorted({r["seed"] for r in chosen})
    out = np.full((len(seeds), len(x_values)), np.nan)
    for r in chosen:
        if r[x_key] in x_values:
            out[seeds.index(r["seed"]), list(x_values).index(r[x_key])] = r[metric]
    if np.isnan(out).any():
        raise KeyError(f"no {metric!r} for some (seed, {x_key}) pair among {len(chosen)} rows matching {where}")
    return out


def summary(values: np.ndarray, percent: bool = True) -> str:
    """'93.3% (90.0-96.7)' for fractions, '4.52 (4.10-4.98)' otherwise: the mean over seeds and the min-max range."""
    values = np.asarray(values, dtype=float)
    if percent:
        return f"{100 * values.mean():.1f}% ({100 * values.min():.1f}-{100 * values.max():.1f})"
    return f"{values.mean():.3g} ({values.min():.3g}-{values.max():.3g})"


def format_table(rows: Sequence[dict], x_key: str, x_values: Sequence, columns: Sequence[tuple[str, str, dict]],
                 percent: bool | Sequence[bool] = True) -> str:
    """A text table, one line per x value and one column (title, metric, where) each: mean (min-max) over seeds."""
    percents = [percent] * len(columns) if isinstance(percent, bool) else list(percent)
    cells = [[summary(table(rows, metric, x_key, x_values, **where)[:, j], pct)
              for (_, metric, where), pct in zip(columns, percents)] for j in range(len(x_values))]
    widths = [max(len(title), *(len(line[i]) for line in cells)) for i, (title, _, _) in enumerate(columns)]
    x_width = max(len(x_key), *(len(f"{x:g}" if isinstance(x, float) else str(x)) for x in x_values))
    lines = [f"{x_key:>{x_width}}  " + "  ".join(f"{t:>{w}}" for (t, _, _), w in zip(columns, widths))]
    for x, line in zip(x_values, cells):
        label = f"{x:g}" if isinstance(x, float) else str(x)
        lines.append(f"{label:>{x_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(line, widths)))
    return "\n".join(lines)
