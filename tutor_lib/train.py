"""LLaVA's two training stages, as fast as a laptop CPU allows.

Stage 1 (feature alignment): only the projector trains, on image-caption pairs.
Stage 2 (instruction tuning): projector and language model train, on question-answer pairs.
Both minimise the same masked next-token loss; they differ in the data and in what is frozen.

Speed comes from doing the per-sample work once, before training: every sample's
(input_ids, labels) row is built up front and moved to the device with the images, so a
training step is just "index a batch, forward, backward, step".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from .batching import build_caption_batch, build_instruction_batch
from .losses import masked_mean_nll
from .model import MultimodalModel, set_stage, trainable_summary


@dataclass(frozen=True)
class Recipe:
    """The seed notebook's recipe, stated once: data sizes, epochs, learning rates, batch size.

    Every default elsewhere (train_stage1/2, `tutor run`, the experiments) refers to RECIPE.
    `quick()` is the one way to run small: a few-second smoke run of the same pipeline.
    """

    n_train: int = 600
    n_test: int = 120  # IID test: the 24 training configurations, fresh noise
    n_heldout: int = 120  # the 6 held-out (color, shape, position) configurations
    stage1_epochs: int = 30
    stage1_lr: float = 1e-3
    stage2_epochs: int = 50
    stage2_lr: float = 5e-4
    batch_size: int = 32

    def quick(self):
        """The same recipe on 96 training samples for 2 + 3 epochs (a subclass stays its own type)."""
        return replace(self, n_train=96, n_test=30, n_heldout=30, stage1_epochs=2, stage2_epochs=3)


RECIPE = Recipe()


def _images(dataset) -> torch.Tensor:
    if hasattr(dataset, "images"):
        return dataset.images
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])  # (N, 3, S, S)


def caption_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, input_ids, labels) for every sample's caption: (N, 3, S, S), (N, L), (N, L)."""
    captions = [dataset[i]["caption_tokens"] for i in range(len(dataset))]
    return (_images(dataset), *build_caption_batch(captions))


def instruction_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, input_ids, labels) for every sample's question and answer."""
    samples = [dataset[i] for i in range(len(dataset))]
    questions = [s["question_tokens"] for s in samples]
    answers = [s["answer_tokens"] for s in samples]
    return (_images(dataset), *build_instruction_batch(questions, answers))


def next_token_loss(model: MultimodalModel, images: torch.Tensor, input_ids: torch.Tensor,
                    labels: torch.Tensor) -> torch.Tensor:
    """The masked next-token loss of a batch: the logit at position N + t predicts label t."""
    logits = model(images, input_ids)  # (B, N + L, V): N visual tokens, then L text tokens
    return masked_mean_nll(logits[:, model.num_patches :], labels)  # text positions only


def fit(
    model: MultimodalModel,
    images: torch.Tensor,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    num_epochs: int | None,
    batch_size: int,
    lr: float,
    *,
    steps: int | None = None,
    desc: str = "training",
    progress: bool = True,
    log_every: int | None = None,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Adam on the parameters that require grad; returns the mean batch loss of each epoch.

    Training stops after `num_epochs` passes over the data, or, when `steps` is given, after
    exactly that many optimizer steps (num_epochs may then be None); the last epoch may be partial.
    Experiments count steps, so that arms with different amounts of data get the same updates.
    """
    if num_epochs is None and steps is None:
        raise ValueError("give num_epochs or steps")
    if (num_epochs is not None and num_epochs < 0) or (steps is not None and steps < 0) or batch_size < 1:
        raise ValueError(f"need num_epochs >= 0, steps >= 0 and batch_size >= 1, "
                         f"got {num_epochs}, {steps} and {batch_size}")
    device = next(model.parameters()).device
    images, input_ids, labels = images.to(device), input_ids.to(device), labels.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: call set_stage(model, 1 or 2) first")
    optimizer = torch.optim.Adam(params, lr=lr)
    n = len(images)
    per_epoch = -(-n // batch_size)
    if steps is not None:
        num_epochs = -(-steps // per_epoch) if num_epochs is None else min(num_epochs, -(-steps // per_epoch))
    remaining = steps if steps is not None else num_epochs * per_epoch
    losses = []
    model.train()
    bar = tqdm(range(num_epochs), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        order = torch.randperm(n, generator=generator).to(device)
        total = torch.zeros((), device=device)  # summed on the device: no sync per step
        batches = min(per_epoch, remaining)
        for start in range(0, batches * batch_size, batch_size):
            idx = order[start : start + batch_size]
            loss = next_token_loss(model, images[idx], input_ids[idx], labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        remaining -= batches
        losses.append(total.item() / max(batches, 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if log_every and ((epoch + 1) % log_every == 0 or epoch + 1 == num_epochs):
            tqdm.write(f"  {desc} epoch {epoch + 1:>3}/{num_epochs}: loss {losses[-1]:.4f}")
    model.eval()
    return losses


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(seed)


STAGE_NAMES = {1: "feature alignment", 2: "instruction tuning"}


def _run_stage(stage: int, model: MultimodalModel, tensors: tuple, num_epochs: int, batch_size: int, lr: float,
               progress: bool, verbose: bool, seed: int | None) -> list[float]:
    set_stage(model, stage)
    if verbose:
        print(f"Stage {stage} ({STAGE_NAMES[stage]}): trainable parameters\n" + trainable_summary(model))
    return fit(model, *tensors, num_epochs, batch_size, lr, desc=f"stage {stage}", progress=progress,
               log_every=10 if verbose else None, generator=_generator(seed))


def train_stage1(
    model: MultimodalModel, dataset, num_epochs: int = RECIPE.stage1_epochs, batch_size: int = RECIPE.batch_size,
    lr: float = RECIPE.stage1_lr,
    *, progress: bool = True, verbose: bool = False, seed: int | None = None,
) -> list[float]:
    """Stage 1, feature alignment: captions, only the projector trains -> per-epoch losses."""
    return _run_stage(1, model, caption_tensors(dataset), num_epochs, batch_size, lr, progress, verbose, seed)


def train_stage2(
    model: MultimodalModel, dataset, num_epochs: int = RECIPE.stage2_epochs, batch_size: int = RECIPE.batch_size,
    lr: float = RECIPE.stage2_lr,
    *, progress: bool = True, verbose: bool = False, seed: int | None = None,
) -> list[float]:
    """Stage 2, instruction tuning: questions and answers, projector + LM train -> per-epoch losses."""
    return _run_stage(2, model, instruction_tensors(dataset), num_epochs, batch_size, lr, progress, verbose, seed)


def train_both_stages(
    model: MultimodalModel, dataset, stage1_epochs: int = RECIPE.stage1_epochs,
    stage2_epochs: int = RECIPE.stage2_epochs, *, batch_size: int = RECIPE.batch_size,
    stage1_lr: float = RECIPE.stage1_lr, stage2_lr: float = RECIPE.stage2_lr,
    progress: bool = True, verbose: bool = False, seed: int | None = None,
) -> dict[str, list[float]]:
    """Stage 1 then stage 2 on the same dataset -> {"stage1": losses, "stage2": losses}."""
    options = {"batch_size": batch_size, "progress": progress, "verbose": verbose}
    stage1 = train_stage1(model, dataset, stage1_epochs, lr=stage1_lr, seed=seed, **options)
    stage2 = train_stage2(model, dataset, stage2_epochs, lr=stage2_lr, seed=None if seed is None else seed + 1, **options)
    return {"stage1": stage1, "stage2": stage2}
