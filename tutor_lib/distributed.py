"""More than one process: stages 1 and 2 under torchrun with DistributedDataParallel.

    tutor run --nproc 2        # torchrun starts 2 processes; gloo on the CPU, NCCL on GPUs

LLaVA-1.5 trains on 8 A100s: each GPU holds a copy of the model, reads its own part of every
batch, and the gradients are averaged across GPUs before each optimizer step (PyTorch's
DistributedDataParallel, DDP). The *global* batch (LLaVA-1.5: 256 in stage 1, 128 in stage 2)
is what the recipe fixes; how many processes share it is a matter of hardware.

Here every process draws the same shuffled order (same seed), cuts the same global batches,
and takes every world_size-th sample of each (`idx[rank::world]`). DDP averages gradients over
processes, so each process scales its loss to `sum of its token losses / tokens in the global
batch * world_size`: the averaged gradient is then exactly the single-process gradient of the
global batch's mean loss, and the losses match a one-process `train.fit` at the same global
batch (tests/test_distributed.py checks it with 2 CPU processes).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .model import MultimodalModel, count_parameters, set_stage, trainable_summary
from .vocab import IGNORE_INDEX


def world() -> tuple[int, int]:
    """(rank, world_size) of this process: (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun started for more than one process (it sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: torch.device | None = None) -> torch.device:
    """Join torchrun's process group (NCCL for CUDA, gloo otherwise) -> this process's device."""
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def fit_ddp(model: MultimodalModel, images: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor,
            num_epochs: int, batch_size: int, lr: float, *, generator: torch.Generator | None = None,
            desc: str = "training", progress: bool = True) -> list[float]:
    """train.fit's loop with each global batch split over the processes -> the same per-epoch mean losses.

    `batch_size` is the global batch; every process must call this with the same data and seed.
    """
    rank, world_size = world()
    if num_epochs < 0 or batch_size < 1:
        raise ValueError(f"need num_epochs >= 0 and batch_size >= 1, got {num_epochs} and {batch_size}")
    device = next(model.parameters()).device
    images, input_ids, labels = images.to(device), input_ids.to(device), labels.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: call set_stage(model, 1 or 2) first")
    ddp = DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.Adam(params, lr=lr)
    n, losses = len(images), []
    model.train()
    bar = tqdm(range(num_epochs), desc=desc, disable=not progress or rank != 0, unit="epoch")
    for _ in bar:
        order = torch.randperm(n, generator=generator).to(device)  # the same order in every process
        total = torch.zeros((), device=device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            tokens = (labels[idx] != IGNORE_INDEX).sum()  # supervised tokens in the global batch
            mine = idx[rank::world_size]  # this process's share
            logits = ddp(images[mine], input_ids[mine])[:, model.num_patches :]  # (b, L, V)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[mine].reshape(-1),
                                  ignore_index=IGNORE_INDEX, reduction="sum")
            loss = nll / tokens * world_size  # DDP averages over processes: the mean is the global batch's
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() / world_size
        if world_size > 1:
            dist.all_reduce(total)  # sum of the processes' shares = the global batches' mean losses
        losses.append(total.item() / -(-n // batch_size))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    return losses


def run_distributed(cfg) -> dict | None:
    """The main job (pipeline.run_pipeline) with stages 1 and 2 under DDP; rank 0 prints and writes report.json."""
    from .data import make_splits
    from .evaluate import accuracy_table
    from .pipeline import _NAMES, _scores
    from .pretrain import load_stage0
    from .runtime import seed_everything
    from .train import caption_tensors, instruction_tensors

    device = init_process_group(torch.device(cfg.device) if cfg.device else None)
    rank, world_size = world()
    say = print if rank == 0 else (lambda *a, **k: None)
    try:
        seed_everything(cfg.seed)  # the same data, projector init and batch order in every process
        say(f"Device: {device} x {world_size} processes ({dist.get_backend()}) | seed {cfg.seed} | "
            f"global batch {cfg.batch_size}, about {-(-cfg.batch_size // world_size)} samples per process")
        splits = make_splits(cfg.n_train, cfg.n_test, cfg.n_heldout, image_size=cfg.model.image_size, seed=cfg.seed)
        model = MultimodalModel(cfg.model).to(device)
        if not cfg.from_scratch:
            load_stage0(model, cfg.stage0_seed, progress=False, verbose=rank == 0)
        seconds, losses = {}, {}
        for stage, tensors, epochs, lr, seed in (
                (1, caption_tensors(splits.train), cfg.stage1_epochs, cfg.stage1_lr, cfg.seed),
                (2, instruction_tensors(splits.train), cfg.stage2_epochs, cfg.stage2_lr, cfg.seed + 1)):
            set_stage(model, stage)
            say(f"Stage {stage}: trainable parameters\n" + trainable_summary(model))
            start = time.perf_counter()
            losses[f"stage{stage}"] = fit_ddp(model, *tensors, epochs, cfg.batch_size, lr, desc=f"stage {stage}",
                                              generator=torch.Generator().manual_seed(seed), progress=cfg.progress)
            seconds[f"stage{stage}"] = time.perf_counter() - start
            if losses[f"stage{stage}"]:
                say(f"  stage {stage} loss {losses[f'stage{stage}'][0]:.4f} -> {losses[f'stage{stage}'][-1]:.4f} "
                    f"in {seconds[f'stage{stage}']:.1f} s")
        if rank != 0:
            return None
        accuracy = _scores(model, splits)
        print("\nExact-match accuracy of greedy answers (and captions), after stage 2:")
        print(accuracy_table({_NAMES[k]: v for k, v in accuracy.items()}))
        out = Path(cfg.output)
        out.mkdir(parents=True, exist_ok=True)
        report = {"world_size": world_size, "backend": dist.get_backend(), "device": str(device),
                  "config": {k: v for k, v in asdict(cfg).items() if k not in ("model", "progress")},
                  "model": asdict(cfg.model), "parameters": count_parameters(model),
                  "seconds": seconds, "losses": losses, "accuracy": accuracy}
        (out / "report_ddp.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote report_ddp.json to {out}/")
        return report
    finally:
        dist.barrier()
        dist.destroy_process_group()
