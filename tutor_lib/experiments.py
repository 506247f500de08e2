"""Small seeded experiments on the two-stage recipe: the machinery behind notebook 07.

Every experiment trains many small models, so it counts optimizer *steps* (`train.fit(...,
steps=N)`) rather than epochs: "skip stage 1 at equal total steps" must give both arms exactly
the same number of updates, whatever the size of their data. One seed fixes everything that is
random in a run: the data (train, IID test and held-out test), the projector's initial weights
and the batch order. Arms that share a seed start from identical weights, so their difference is
paired (see `stats.paired_bootstrap`).

Every model starts from stage 0 (`pretrain.load_stage0`): the pretrained vision encoder and
language model, frozen in stage 1 as in LLaVA; only the projector is drawn fresh. The
learning rates and the batch size are the seed's (`train.RECIPE`); the step budgets are small.

Results are plain dicts ("rows"), one per trained model; `table` turns them into the
(num_seeds, num_x) arrays that `experiment_plots` draws and `stats` summarises.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn

from .augment import HFLIP_POSITION, hflip_dataset
from .data import HELD_OUT_CONFIGS, TRAIN_CONFIGS, ShapesDataset, make_splits
from .evaluate import answer_questions, generate
from .losses import masked_mean_nll
from .model import MultimodalModel, set_stage
from .pretrain import TextCorpus, load_stage0, make_text_corpus, text_loss
from .runtime import pick_device
from .train import RECIPE, caption_tensors, fit, instruction_tensors
from .vocab import COLORS, IGNORE_INDEX, PAD, POSITIONS, QUESTION_TYPES, SHAPES, START


@dataclass(frozen=True)
class ExperimentConfig:
    """What is specific to the experiments; learning rates and batch size come from train.RECIPE."""

    image_size: int = 32  # 16 visual tokens instead of the seed's 64: a step costs about a quarter
    n_captions: int = 600  # stage-1 (caption) data, also the pool the stage-2 subsets come from
    n_test: int = 60  # IID test samples: the 24 training triples, fresh noise
    n_heldout: int = 60  # held-out test samples: the 6 triples never trained on (about 10 questions each)
    stage1_steps: int = 30  # the seed's stage 1 took 570 steps
    stage2_steps: int = 20  # the seed's stage 2 took 950
    seeds: tuple[int, ...] = tuple(range(6))  # 8 would take a third longer than notebook 07's time budget allows
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


def train_steps(model: nn.Module, tensors: tuple, steps: int, lr: float, seed: int) -> list[float]:
    """train.fit for exactly `steps` Adam steps at the recipe's batch size, batch order from `seed`."""
    return fit(model, *tensors, None, RECIPE.batch_size, lr, steps=steps,
               generator=torch.Generator().manual_seed(seed), progress=False)


def new_model(cfg: ExperimentConfig, seed: int) -> MultimodalModel:
    """A model before stage 1: stage-0 parts and a projector drawn from `seed` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultimodalModel(image_size=cfg.image_size)
        # A size without shipped or cached weights is pretrained here once, then cached.
        load_stage0(model, seed=cfg.stage0_seed, progress=False, verbose=False)
    return model.to(pick_device(cfg.device))


def splits_for(cfg: ExperimentConfig, seed: int):
    """Train (n_captions samples), IID test and held-out test data of one seed."""
    return make_splits(cfg.n_captions, cfg.n_test, cfg.n_heldout, image_size=cfg.image_size, seed=seed)


def run_stage1(model: MultimodalModel, dataset, cfg: ExperimentConfig, seed: int) -> list[float]:
    """Stage 1 for cfg.stage1_steps steps on the dataset's captions: only the projector trains."""
    set_stage(model, 1)
    return train_steps(model, caption_tensors(dataset), cfg.stage1_steps, RECIPE.stage1_lr, seed)


def run_stage2(model: MultimodalModel, dataset, cfg: ExperimentConfig, seed: int, steps: int | None = None,
               lr: float | None = None) -> list[float]:
    """Stage 2 for `steps` (default cfg.stage2_steps) at `lr` (default the recipe's): projector and LM train."""
    set_stage(model, 2)
    return train_steps(model, instruction_tensors(dataset), cfg.stage2_steps if steps is None else steps,
                       RECIPE.stage2_lr if lr is None else lr, seed + 1)


_ALIGNED: dict[tuple, dict] = {}  # stage-1 weights per (config, seed): every experiment starts from them


def aligned_model(cfg: ExperimentConfig, seed: int) -> MultimodalModel:
    """A new model of this seed after stage 1 on all n_captions training captions (trained once, then cached)."""
    key = (replace(cfg, seeds=()), seed)
    model = new_model(cfg, seed)
    if key not in _ALIGNED:
        run_stage1(model, splits_for(cfg, seed).train, cfg, seed)
        _ALIGNED[key] = copy.deepcopy(model.state_dict())
    model.load_state_dict(_ALIGNED[key])
    return model


# -- measurements ------------------------------------------------------------------------------

def triple_name(config: tuple[int, int, int]) -> str:
    """(0, 1, 4) -> 'red square center'."""
    c, s, p = config
    return f"{COLORS[c]} {SHAPES[s]} {POSITIONS[p]}"


def qa_scores(model: MultimodalModel, splits) -> dict[str, float]:
    """Exact-match accuracy on both test sets: overall, per question type, and per held-out triple.

    Keys: "iid", "iid_color", ..., "heldout", "heldout_position", "heldout@red square center"
    (every question about that triple) for each of the six held-out triples, and "heldout_mirror"
    and "heldout_center": the held-out triples a flip can synthesise from training ones, and the others.
    """
    scores = {}
    for name, dataset in (("iid", splits.test_iid), ("heldout", splits.test_heldout)):
        answers = answer_questions(model, dataset)
        right = np.array([a == list(t) for a, t in zip(answers, dataset.answers)])  # (N,)
        scores[name] = right.mean()
        for q, question_type in enumerate(QUESTION_TYPES):
            scores[f"{name}_{question_type}"] = right[dataset.question_types.numpy() == q].mean()
        if name == "heldout":
            triples = list(zip(dataset.colors.tolist(), dataset.shapes.tolist(), dataset.positions.tolist()))
            for config in HELD_OUT_CONFIGS:
                mask = np.array([t == config for t in triples])
                scores[f"heldout@{triple_name(config)}"] = right[mask].mean() if mask.any() else float("nan")
            reachable = np.array([t in FLIP_REACHABLE for t in triples])
            scores["heldout_mirror"] = right[reachable].mean() if reachable.any() else float("nan")
            scores["heldout_center"] = right[~reachable].mean() if (~reachable).any() else float("nan")
    return {key: float(value) for key, value in scores.items()}


@torch.no_grad()
def caption_scores(model: MultimodalModel, dataset) -> dict[str, float]:
    """Captioning on the caption instruction: greedy exact match, and the loss on the two caption words.

    Our vocabulary has no word for "describe": the caption instruction is the empty question,
    "<start>" alone, exactly as captions were asked for in stage 0's text and in stage 1.
    caption_loss is the mean teacher-forced loss (nats) of the color and shape words; the
    caption's <end> is left out, because stage 2 trains "<end> after a color or shape word".
    """
    images, input_ids, labels = caption_tensors(dataset)
    device = next(model.parameters()).device
    logits = model(images.to(device), input_ids.to(device))[:, model.num_patches:]  # (N, 3, V)
    loss = masked_mean_nll(logits[:, :2], labels[:, :2].to(device)).item()
    generated = generate(model, images, torch.full((len(images), 1), START), max_new_tokens=3)
    accuracy = float(np.mean([g == list(c) for g, c in zip(generated, dataset.captions)]))
    return {"caption_loss": loss, "caption_acc": accuracy}


def coverage(dataset: ShapesDataset) -> int:
    """How many distinct (color, shape, position, question type) combinations the dataset holds (72 possible)."""
    return len(set(zip(dataset.colors.tolist(), dataset.shapes.tolist(), dataset.positions.tolist(),
                       dataset.question_types.tolist())))


def mirrored(config: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (color, shape, position) triple a horizontal flip turns `config` into."""
    c, s, p = config
    return (c, s, POSITIONS.index(HFLIP_POSITION[POSITIONS[p]]))


# Held-out triples that are the mirror image of a training triple: a flip can synthesise them.
FLIP_REACHABLE = tuple(c for c in HELD_OUT_CONFIGS if mirrored(c) in TRAIN_CONFIGS)


# -- experiment 1: skip stage 1? ---------------------------------------------------------------

SKIP_ARMS = ("two-stage", "two-stage, n captions", "stage 2 only")


@_threaded
def run_skip_stage1(cfg: ExperimentConfig, sizes: Sequence[int]) -> list[dict]:
    """Three arms at equal total steps (stage1_steps + stage2_steps) for each stage-2 size n -> one row per model.

    two-stage: stage 1 on all n_captions captions, then stage 2 on n examples.
    two-stage, n captions: stage 1 on the captions of the same n images only, then stage 2.
    stage 2 only: every step on the n instruction examples.
    """
    if max(sizes) > cfg.n_captions:
        raise ValueError(f"stage-2 sizes must be at most n_captions={cfg.n_captions}, got {max(sizes)}")
    rows = []
    for seed in cfg.seeds:
        splits = splits_for(cfg, seed)
        aligned = aligned_model(cfg, seed)
        for n in sizes:
            data = splits.train.subset(range(n))  # nested: the 30 are among the 150
            models = {"two-stage": copy.deepcopy(aligned), "two-stage, n captions": new_model(cfg, seed),
                      "stage 2 only": new_model(cfg, seed)}  # all three from the same initial weights
            run_stage1(models["two-stage, n captions"], data, cfg, seed)
            run_stage2(models["two-stage"], data, cfg, seed)
            run_stage2(models["two-stage, n captions"], data, cfg, seed)
            run_stage2(models["stage 2 only"], data, cfg, seed, steps=cfg.stage1_steps + cfg.stage2_steps)
            rows += [{"seed": seed, "n": n, "arm": arm, **qa_scores(model, splits)} for arm, model in models.items()]
    return rows


# -- experiment 3: forgetting ------------------------------------------------------------------

@dataclass(frozen=True)
class ForgettingArm:
    """One way to run stage 2: its learning rate, what is mixed into its data, and whether the LM trains."""

    lr: float = RECIPE.stage2_lr
    replay: str | None = None  # None, "text" (pretraining text) or "captions" (stage-1 captions)
    frozen_lm: bool = False  # True: stage 2 trains only the projector


class _WithText(nn.Module):
    """A MultimodalModel that also reads text-only samples, so train.fit can mix them into stage 2.

    fit indexes its "images" argument by batch; here that argument holds row numbers: a row below
    len(images) is an image sample, the others are text samples whose scene in words (one word
    slot per patch, as in stage 0) stands where the projected image would.
    """

    def __init__(self, model: MultimodalModel, images: torch.Tensor, scenes: torch.Tensor):
        super().__init__()
        if scenes.shape[1] != model.num_patches:
            raise ValueError(f"scenes have {scenes.shape[1]} word slots but the model reads {model.num_patches} patches")
        device = next(model.parameters()).device
        self.model, self.images, self.scenes = model, images.to(device), scenes.to(device)
        self.num_patches = model.num_patches

    def forward(self, rows: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        n = len(self.images)
        lm = self.model.language_model
        visual = self.model.encode_images(self.images[rows.clamp(max=n - 1)])  # (B, N, C)
        words = lm.token_embedding(self.scenes[(rows - n).clamp(min=0)])  # (B, N, C)
        prefix = torch.where((rows < n)[:, None, None], visual, words)
        return lm(torch.cat([prefix, lm.token_embedding(input_ids)], dim=1))  # (B, N + L, V)


def _pad_cat(parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (input_ids, labels) pairs of different lengths, padding with PAD and IGNORE_INDEX."""
    length = max(ids.shape[1] for ids, _ in parts)
    ids = torch.cat([nn.functional.pad(i, (0, length - i.shape[1]), value=PAD) for i, _ in parts])
    labels = torch.cat([nn.functional.pad(lab, (0, length - lab.shape[1]), value=IGNORE_INDEX) for _, lab in parts])
    return ids, labels


def heldout_text(cfg: ExperimentConfig, n: int = 256) -> TextCorpus:
    """Pretraining-style text the LM never trained on (stage 0 used seed 42's samples): its "knowledge" test."""
    return make_text_corpus(n, image_size=cfg.image_size, seed=10_000 + cfg.stage0_seed)


def replay_text(cfg: ExperimentConfig, n: int, seed: int) -> TextCorpus:
    """n samples of the pretraining corpus to mix into stage 2 (other samples than the held-out text)."""
    return make_text_corpus(n, image_size=cfg.image_size, seed=20_000 + seed)


def _stage2_data(arm: ForgettingArm, model: MultimodalModel, data: ShapesDataset, pool: ShapesDataset,
                 cfg: ExperimentConfig, seed: int) -> tuple[nn.Module, tuple]:
    """(module to train, its fit tensors) for one arm: the n examples plus as many replay samples, if any."""
    images, ids, labels = instruction_tensors(data)
    if arm.replay is None:
        return model, (images, ids, labels)
    if arm.replay == "captions":  # the captions of other stage-1 images
        cap_images, cap_ids, cap_labels = caption_tensors(pool.subset(range(len(pool) - len(data), len(pool))))
        return model, (torch.cat([images, cap_images]), *_pad_cat([(ids, labels), (cap_ids, cap_labels)]))
    if arm.replay == "text":
        text = replay_text(cfg, len(data), seed)
        rows = torch.arange(len(data) + len(text))
        return _WithText(model, images, text.scenes), (rows, *_pad_cat([(ids, labels), (text.input_ids, text.labels)]))
    raise ValueError(f"replay must be None, 'text' or 'captions', got {arm.replay!r}")


@torch.no_grad()
def _task_accuracy(model: MultimodalModel, dataset: ShapesDataset) -> float:
    answers = answer_questions(model, dataset)
    return float(np.mean([a == list(t) for a, t in zip(answers, dataset.answers)]))


def knowledge(model: MultimodalModel, splits, text: TextCorpus) -> dict[str, float]:
    """What the pretrained LM and stage 1 knew: text loss on held-out pretraining text, and captioning."""
    return {"text_loss": text_loss(model.language_model, text), **caption_scores(model, splits.test_iid)}


@_threaded
def run_forgetting(cfg: ExperimentConfig, arms: dict[str, ForgettingArm], n: int, target: float = 0.85,
                   check_every: int = 10, max_steps: int = 40) -> list[dict]:
    """Stage 2 from each seed's stage-1 weights, per arm, until it answers `target` of a validation set right.

    Every `check_every` steps the model answers 48 validation questions (fresh IID images); it stops
    at the first check at or above `target` (or at max_steps), so arms are compared at equal task
    accuracy, not at equal steps. Each chunk is one call of train.fit, so Adam's running averages
    restart every check_every steps, the same in every arm. Rows: one "after stage 1" row per seed,
    then one per arm with the steps it took, its accuracies, text loss and captioning.
    """
    if n > cfg.n_captions // 2:
        raise ValueError(f"n must be at most n_captions // 2 = {cfg.n_captions // 2} (the rest is the replay pool)")
    text = heldout_text(cfg)
    rows = []
    for seed in cfg.seeds:
        splits = splits_for(cfg, seed)
        validation = make_splits(1, 48, 1, image_size=cfg.image_size, seed=50_000 + seed).test_iid
        aligned = aligned_model(cfg, seed)
        rows.append({"seed": seed, "arm": "after stage 1", "steps": 0, "validation": _task_accuracy(aligned, validation),
                     **knowledge(aligned, splits, text)})
        data = splits.train.subset(range(n))
        for name, arm in arms.items():
            model = copy.deepcopy(aligned)
            set_stage(model, 1 if arm.frozen_lm else 2)
            module, tensors = _stage2_data(arm, model, data, splits.train, cfg, seed)
            generator = torch.Generator().manual_seed(seed + 1)
            steps, accuracy = 0, _task_accuracy(model, validation)
            while accuracy < target and steps < max_steps:
                fit(module, *tensors, None, RECIPE.batch_size, arm.lr, steps=check_every, generator=generator,
                    progress=False)
                steps += check_every
                accuracy = _task_accuracy(model, validation)
            rows.append({"seed": seed, "arm": name, "steps": steps, "validation": accuracy,
                         **knowledge(model, splits, text)})
    return rows


# -- experiment 4: augmentation ----------------------------------------------------------------

def augment_with_example(dataset: ShapesDataset, example_fn: Callable) -> ShapesDataset:
    """Apply a per-image augmentation example_fn(image, position) -> (image, position) to every sample."""
    images, positions = [], []
    for i in range(len(dataset)):
        image, position = example_fn(dataset.images[i], POSITIONS[int(dataset.positions[i])])
        images.append(image)
        positions.append(POSITIONS.index(position))
    return ShapesDataset(torch.stack(images), dataset.colors.clone(), dataset.shapes.clone(),
                         torch.tensor(positions), dataset.question_types.clone())


Arm = Callable[[ShapesDataset], ShapesDataset]  # the n originals -> stage-2 training set


def augmentation_arms(example_fn: Callable) -> dict[str, Arm]:
    """The stage-2 training sets of the augmentation experiment: the originals plus a flipped copy (or not).

    example_fn(image, position) -> (image, position) is the flip under test (the student's hflip_example).
    """
    return {
        "none": lambda data: data,
        "flip, swap": lambda data: ShapesDataset.concat([data, augment_with_example(data, example_fn)]),
        "flip, no swap": lambda data: ShapesDataset.concat([data, hflip_dataset(data, swap_labels=False)]),
    }


@_threaded
def run_augmentation(cfg: ExperimentConfig, arms: dict[str, Arm], n: int) -> list[dict]:
    """Stage 1, then stage 2 on each arm's version of the same n samples, at equal steps -> rows."""
    rows = []
    for seed in cfg.seeds:
        splits = splits_for(cfg, seed)
        aligned = aligned_model(cfg, seed)
        data = splits.train.subset(range(n))
        for arm, build in arms.items():
            model = copy.deepcopy(aligned)
            run_stage2(model, build(data), cfg, seed)
            rows.append({"seed": seed, "arm": arm, **qa_scores(model, splits)})
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


def column(rows: Sequence[dict], metric: str, **where) -> np.ndarray:
    """One value of `metric` per seed (sorted by seed) for the rows matching `where`."""
    chosen = sorted((r for r in rows if all(r.get(k) == v for k, v in where.items())), key=lambda r: r["seed"])
    if not chosen:
        raise KeyError(f"no row matches {where}")
    if len({r["seed"] for r in chosen}) != len(chosen):
        raise KeyError(f"several rows per seed match {where}: add a condition")
    return np.array([r[metric] for r in chosen], dtype=float)


def interval_table(rows: Sequence[dict], by: str, values: Sequence, columns: Sequence[tuple[str, str]],
                   percent: bool | Sequence[bool] = True, digits: Sequence[int] | None = None, **where) -> str:
    """A text table: a line per value of `by` (an arm, a size), a column (title, metric) each: mean [95 % interval].

    Decimals per column: `digits`, by default 1 for percentages and 3 for other values.
    """
    from .stats import describe  # here, not at the top: stats is only needed for printing

    percents = [percent] * len(columns) if isinstance(percent, bool) else list(percent)
    digits = [1 if pct else 3 for pct in percents] if digits is None else list(digits)
    cells = [[describe(column(rows, metric, **{by: v}, **where), percent=pct, digits=d)
              for (_, metric), pct, d in zip(columns, percents, digits)] for v in values]
    labels = [str(v) for v in values]
    widths = [max(len(title), *(len(line[i]) for line in cells)) for i, (title, _) in enumerate(columns)]
    first = max(len(by), *(len(label) for label in labels))
    lines = [f"{by:<{first}}  " + "  ".join(f"{t:>{w}}" for (t, _), w in zip(columns, widths))]
    lines += [f"{label:<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(line, widths)) for label, line in zip(labels, cells)]
    return "\n".join(lines)
