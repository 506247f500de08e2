"""Student-like implementations of the stage-1 and stage-2 exercises, right and wrong, for the check tests.

`make_train(stage, **mistake)` writes a training loop the way a student would, with one
switch per typical mistake; the defaults give a correct loop. A second, differently built
correct loop (`train_per_batch`) builds every batch in Python inside the loop, computes the
loss by hand and uses AdamW over explicitly chosen parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tutor_lib.batching import build_caption_batch, build_instruction_batch
from tutor_lib.model import set_stage
from tutor_lib.vocab import END, IGNORE_INDEX, PAD, START

DEFAULTS = {1: (30, 32, 1e-3), 2: (50, 32, 5e-4)}


def _tensors(stage: int, dataset, question_supervised: bool = False, pad_labels_with: int = IGNORE_INDEX):
    samples = [dataset[i] for i in range(len(dataset))]
    if stage == 1:
        ids, labels = build_caption_batch([s["caption_tokens"] for s in samples])
    elif question_supervised:
        rows = [[START, *s["question_tokens"], *s["answer_tokens"], END] for s in samples]
        length = max(len(r) for r in rows) - 1
        ids = torch.tensor([r[:-1] + [PAD] * (length - len(r) + 1) for r in rows])
        labels = torch.tensor([r[1:] + [IGNORE_INDEX] * (length - len(r) + 1) for r in rows])
    else:
        ids, labels = build_instruction_batch([s["question_tokens"] for s in samples], [s["answer_tokens"] for s in samples])
    if pad_labels_with != IGNORE_INDEX:
        labels = torch.where(labels == IGNORE_INDEX, pad_labels_with, labels)
    return dataset.images, ids, labels


def make_train(stage: int, *, freeze: str = "set_stage", all_parameters: bool = False, slice_offset: int = 0,
               shift: bool = True, reduction: str = "mean", epoch_value: str = "mean", question_supervised: bool = False,
               pad_labels_with: int = IGNORE_INDEX, maximize: bool = False, optimizer: str = "adam",
               freeze_after_optimizer: bool = False, steps: str = "zero_grad backward step", fixed_lr: float | None = None,
               skip_last_batch: bool = False, end_supervised: bool = True, label_smoothing: float = 0.0,
               detach_logits: bool = False):
    """A vectorised training loop; each keyword switches on one typical mistake (defaults: correct)."""

    def train(model, dataset, num_epochs, batch_size, lr):
        def freeze_model():
            if freeze == "set_stage":
                set_stage(model, stage)
            elif freeze == "other_stage":
                set_stage(model, 3 - stage)
            elif freeze == "everything_on":
                model.requires_grad_(True)
            elif freeze == "vision_on":
                set_stage(model, stage)
                model.vision_encoder.requires_grad_(True)
            elif freeze == "swapped":  # the projector frozen, the language model trained
                model.requires_grad_(False)
                model.language_model.requires_grad_(True)
            elif freeze == "method":
                model.set_stage(stage)  # the seed's API, which MultimodalModel does not have

        if not freeze_after_optimizer:
            freeze_model()
        params = list(model.parameters()) if all_parameters else [p for p in model.parameters() if p.requires_grad]
        rate = lr if fixed_lr is None else fixed_lr
        if optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=rate, momentum=0.9)
        else:
            opt = torch.optim.Adam(params, lr=rate, maximize=maximize)
        if freeze_after_optimizer:
            freeze_model()
        images, ids, labels = _tensors(stage, dataset, question_supervised, pad_labels_with)
        if not shift:
            labels = torch.where(ids == PAD, IGNORE_INDEX, ids) if pad_labels_with == IGNORE_INDEX else ids
        if not end_supervised:
            labels = labels.masked_fill(labels == END, IGNORE_INDEX)
        n, N = len(images), model.num_patches
        losses, total = [], 0.0
        for _ in range(num_epochs):
            order = torch.randperm(n)
            batch_losses = []
            if epoch_value != "not_reset":
                total = 0.0
            for start in range(0, n - batch_size if skip_last_batch else n, batch_size):
                idx = order[start : start + batch_size]
                logits = model(images[idx], ids[idx])
                if detach_logits:
                    logits = logits.detach()
                lab = labels[idx]
                if slice_offset == 0:
                    text = logits[:, N:]
                elif slice_offset == -1:
                    text = logits[:, N - 1 : -1]
                elif slice_offset == "twice":  # the labels shifted once more
                    text, lab = logits[:, N:-1], lab[:, 1:]
                elif slice_offset == "image":
                    text = logits[:, : lab.shape[1]]
                else:
                    text, lab = logits[:, N + 1 :], lab[:, :-1]
                loss = F.cross_entropy(text.reshape(-1, text.shape[-1]), lab.reshape(-1), ignore_index=IGNORE_INDEX,
                                       reduction="sum" if reduction in ("samples", "positions") else reduction,
                                       label_smoothing=label_smoothing)
                if reduction == "samples":
                    loss = loss / len(idx)
                elif reduction == "positions":
                    loss = loss / lab.numel()
                for action in steps.split():
                    if action == "zero_grad":
                        opt.zero_grad()
                    elif action == "backward":
                        loss.backward()
                    elif action == "step":
                        opt.step()
                batch_losses.append(loss)
            if epoch_value == "mean":
                losses.append(sum(b.item() for b in batch_losses) / len(batch_losses))
            elif epoch_value == "last":
                losses.append(batch_losses[-1].item())
            elif epoch_value == "first":
                losses.append(batch_losses[0].item())
            elif epoch_value == "per_batch":
                losses.extend(b.item() for b in batch_losses)
            elif epoch_value == "sum":
                losses.append(sum(b.item() for b in batch_losses))
            elif epoch_value == "per_sample":
                losses.append(sum(b.item() for b in batch_losses) / n)
            elif epoch_value == "tensor":
                losses.append(sum(batch_losses) / len(batch_losses))  # keeps the graph
            elif epoch_value == "not_reset":
                total += sum(b.item() for b in batch_losses)
                losses.append(total / len(batch_losses))
            elif epoch_value == "median":
                losses.append(sorted(b.item() for b in batch_losses)[len(batch_losses) // 2])
        return None if epoch_value == "nothing" else losses

    train.__defaults__ = DEFAULTS[stage]
    train.__name__ = train.__qualname__ = f"train_stage{stage}"
    return train


def _per_batch_rows(stage: int, samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    rows, label_rows = [], []
    for s in samples:
        if stage == 1:
            text, masked = s["caption_tokens"], 0
        else:
            text, masked = [*s["question_tokens"], *s["answer_tokens"]], len(s["question_tokens"])
        rows.append([START, *text])
        label_rows.append([IGNORE_INDEX] * masked + [*text[masked:], END])
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD)
    labels = torch.full((len(rows), width), IGNORE_INDEX)
    for i, (r, lr_) in enumerate(zip(rows, label_rows)):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(lr_)] = torch.tensor(lr_)
    return ids, labels


def make_train_per_batch(stage: int):
    """A second correct loop: Python batches, a hand-written masked loss, AdamW over the chosen modules."""

    def train(model, dataset, num_epochs, batch_size, lr):
        model.vision_encoder.requires_grad_(False)
        model.projector.requires_grad_(True)
        model.language_model.requires_grad_(stage == 2)
        params = [*model.projector.parameters()] + ([*model.language_model.parameters()] if stage == 2 else [])
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        losses = []
        for _ in range(num_epochs):
            order = torch.randperm(len(dataset)).tolist()
            total, count = 0.0, 0
            for start in range(0, len(order), batch_size):
                samples = [dataset[i] for i in order[start : start + batch_size]]
                ids, labels = _per_batch_rows(stage, samples)
                images = torch.stack([s["image"] for s in samples])
                logp = model(images, ids)[:, model.num_patches :].log_softmax(-1)  # (B, L, V)
                keep = labels != IGNORE_INDEX
                nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, L)
                loss = (nll * keep).sum() / keep.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss)
                count += 1
            losses.append(total / count)
        return losses

    train.__defaults__ = DEFAULTS[stage]
    train.__name__ = train.__qualname__ = f"train_stage{stage}"
    return train
