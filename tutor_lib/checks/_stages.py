"""What the checks of notebooks 05 (stage 1) and 06 (stage 2) share: batch diagnosis and training checks.

A training function is run four times on a tiny model (16x16 images, 4 visual tokens, one
block) and a 24-sample dataset, each run asking one question:

1. lr=0, one full batch: is the reported loss the masked mean over exactly the supervised
   text positions? With lr=0 nothing moves, so the number must equal the reference loss of
   the untouched model to 1e-4. Off-by-one slicing, unshifted labels, supervised questions or
   padding and summed losses all give a different number, and the message says which.
2. lr=0, three batches per epoch, two epochs: one value per epoch, each the epoch's mean.
3. lr=0.05: which parameters changed (bit for bit) and which requires_grad flags are on.
4. lr=1e-2, full batch: does the loss go down at all?

While the cases run, the notebook's batch builder is replaced by tutor_lib's (`reference_batches`):
the training test grades the loop, and a wrong builder loses only its own test's points.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
import sys
from collections.abc import Callable, Sequence

import torch

from ..batching import build_caption_batch as _ref_caption_batch
from ..batching import build_instruction_batch as _ref_instruction_batch
from ..data import make_dataset
from ..model import ModelConfig, MultimodalModel
from ..model import set_stage as _ref_set_stage
from ..vocab import END, IGNORE_INDEX, PAD, decode
from ._common import CheckError, fail, quiet, short
from .trusted import cross_entropy, equal, rng
from .trusted import manual_seed as _manual_seed
from .trusted import no_grad as _no_grad

TINY = ModelConfig(image_size=16, patch_size=8, vision_dim=16, llm_dim=16, num_heads=2, num_layers=1)
BOXES = ("vision_encoder", "projector", "language_model")
TOLERANCE = 1e-4


@contextlib.contextmanager
def silenced():
    """quiet(), and inside a notebook also swallow printed and displayed output (tqdm's widget progress bars)."""
    capture = contextlib.nullcontext()
    ipython = sys.modules.get("IPython")  # a kernel has imported it; plain Python has no widgets to swallow
    if ipython is not None and ipython.get_ipython() is not None:
        from IPython.utils.capture import capture_output

        capture = capture_output(stdout=True, stderr=True, display=True)
    with quiet(), capture:
        yield


# -- token rows in messages -----------------------------------------------------------------------

# [1, 10, 13, -100] -> '<start> red circle -100': vocab.decode, showing special tokens and -100
words = functools.partial(decode, skip_special=False)


def row_text(row: Sequence[int]) -> str:
    row = [int(t) for t in row]
    return f"{row}  ({words(row)})"


# -- batches --------------------------------------------------------------------------------------

def expect_batch_tensors(case: str, result: object, shape: tuple[int, int], shape_hint: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fail unless result is (input_ids, labels), two long tensors of the given shape."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        fail(case, "a tuple (input_ids, labels)", short(result), "end the function with `return input_ids, labels`")
    for what, value in zip(("input_ids", "labels"), result):
        if not isinstance(value, torch.Tensor):
            fail(f"{case}: {what}", "a torch.Tensor", f"{type(value).__name__}: {short(value)}",
                 "build it with torch.tensor(rows, dtype=torch.long)")
        if value.dtype != torch.long:
            fail(f"{case}: {what}", "dtype torch.int64 (long)", f"dtype {value.dtype}",
                 "token ids and labels are integers: torch.tensor(rows, dtype=torch.long); "
                 "F.cross_entropy and nn.Embedding need long tensors")
        if tuple(value.shape) != tuple(shape):
            fail(f"{case}: {what}", f"shape {tuple(shape)}", f"shape {tuple(value.shape)}", shape_hint)
    ids, labels = (t.detach().cpu() for t in result)
    return ids, labels


def first_bad_row(received: torch.Tensor, expected: torch.Tensor) -> int:
    for i in range(len(expected)):
        if not equal(received[i], expected[i]):
            return i
    return -1


# -- training functions ---------------------------------------------------------------------------

def check_signature(name: str, fn: Callable, defaults: dict[str, float]) -> None:
    """The exercise's signature: (model, dataset, num_epochs=..., batch_size=..., lr=...)."""
    wanted = f"{name}(model, dataset, " + ", ".join(f"{k}={v}" for k, v in defaults.items()) + ")"
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        fail("signature", wanted, f"{type(fn).__name__}: {short(fn)}", f"define {name} with `def`")
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key, value in defaults.items():
        param = params.get(key)
        ok = param is not None and isinstance(param.default, numbers.Real) and math.isclose(param.default, value)
        if len(positional) < 2 or not ok:
            fail("signature", wanted, f"{name}{inspect.signature(fn)}",
                 "keep the signature of the exercise (the notebook calls it with these defaults)")


def tiny_model(stage_before: int | None, seed: int = 0) -> MultimodalModel:
    """The same tiny model every time for a given seed (call inside rng())."""
    _manual_seed(seed)
    model = MultimodalModel(TINY)
    if stage_before is not None:
        _ref_set_stage(model, stage_before)
    return model


def tiny_dataset(seed: int, n: int = 24):
    return make_dataset(n, image_size=TINY.image_size, seed=seed)


def reference_tensors(stage: int, dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, input_ids, labels) of the whole dataset, built by the reference."""
    samples = [dataset[i] for i in range(len(dataset))]
    if stage == 1:
        ids, labels = _ref_caption_batch([s["caption_tokens"] for s in samples])
    else:
        ids, labels = _ref_instruction_batch([s["question_tokens"] for s in samples], [s["answer_tokens"] for s in samples])
    return dataset.images, ids, labels


def _ce(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> float:
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction=reduction).item()


def loss_candidates(stage: int, model: MultimodalModel, dataset) -> tuple[float, dict[str, float]]:
    """The right full-batch loss of the untouched model, and the numbers typical mistakes give."""
    images, ids, labels = reference_tensors(stage, dataset)
    n = model.num_patches
    with _no_grad():
        logits = model(images, ids)  # (B, N + L, V)
    text = logits[:, n:]  # (B, L, V): position N + t predicts label t
    right = _ce(text, labels)
    real = ids != PAD  # (B, L): the tokens that are not padding
    unshifted = torch.where(real, ids, IGNORE_INDEX)
    sequence = torch.cat([ids, torch.full((len(ids), 1), PAD)], dim=1)  # the inputs, and room for <end>
    for i in range(len(ids)):
        sequence[i, int(real[i].sum())] = END
    shifted_all = torch.where(sequence[:, 1:] != PAD, sequence[:, 1:], IGNORE_INDEX)  # every next text token a label
    candidates = {
        "summed instead of averaged": _ce(text, labels, "sum"),
        "logits sliced one position off: logits[:, N - 1:-1]": _ce(logits[:, n - 1 : -1], labels),
        "logits sliced one position off: logits[:, N + 1:] (labels[:, :-1])": _ce(logits[:, n + 1 :], labels[:, :-1]),
        "labels not shifted: the inputs used as labels": _ce(text, unshifted),
        "labels not shifted, padding supervised": _ce(text, ids),
        "padding supervised: labels padded with PAD (0) instead of -100":
            _ce(text, torch.where(labels == IGNORE_INDEX, PAD, labels)),
        "the first L positions (visual tokens) used: logits[:, :L]": _ce(logits[:, : ids.shape[1]], labels),
        "averaged over every position, ignored ones included": _ce(text, labels, "sum") / labels.numel(),
        "averaged over samples instead of supervised tokens": _ce(text, labels, "sum") / len(labels),
        "<end> not supervised": _ce(text, torch.where(labels == END, IGNORE_INDEX, labels)),
    }
    if stage == 2:
        candidates["question tokens supervised: labels are every next text token"] = _ce(text, shifted_all)
    # Drop mistakes that happen to give the right number on this data (e.g. no padding in stage 1).
    candidates = {k: v for k, v in candidates.items() if abs(v - right) > 10 * TOLERANCE}
    return right, candidates


_HINTS = {
    "summed instead of averaged": "the loss is the mean over supervised tokens: F.cross_entropy(..., ignore_index=-100) "
                                  "with its default reduction='mean'",
    "padding supervised": "labels are padded with IGNORE_INDEX (-100), so padding carries no loss",
    "question tokens supervised": "only the answer and its <end> carry labels; every position that predicts a question "
                                  "token has label -100",
    "labels not shifted": "the label at text position t is the token *after* input t: labels = sequence[1:], "
                          "inputs = sequence[:-1]",
    "logits sliced one position off": "the logit at position num_patches + t predicts label t, so the text logits are "
                                      "logits[:, model.num_patches:] and line up with labels as they are",
    "the first L positions": "the first num_patches positions are the image; the text logits are logits[:, model.num_patches:]",
    "averaged over every": "divide by the number of supervised positions (labels != -100), not by all positions",
    "averaged over samples": "divide by the number of supervised tokens, not by the number of samples",
    "<end> not supervised": "the <end> after the text is a label too: it is how the model learns to stop",
    "the epoch's total divided": "an epoch's loss is the mean of its batch losses: divide their sum by the number of batches",
}


def _hint_for(mistake: str) -> str:
    return next((h for key, h in _HINTS.items() if mistake.startswith(key)), "")


def _losses(case: str, result: object, num_epochs: int, batches_per_epoch: int) -> list[float]:
    if not isinstance(result, (list, tuple)):
        fail(case, f"a list of {num_epochs} per-epoch losses", f"{type(result).__name__}: {short(result)}",
             "collect one number per epoch in a list and return it")
    values = []
    for value in result:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                fail(case, "one number per epoch", f"a tensor of shape {tuple(value.shape)} in the list",
                     "append the epoch's mean loss as a float: loss.item()")
            if value.requires_grad:
                fail(case, "Python floats", "a tensor that still holds its autograd graph",
                     "append loss.item(), not loss: a tensor keeps every step's graph alive")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            fail(case, "Python floats", f"{type(value).__name__}: {short(value)}", "append loss.item() once per epoch")
        values.append(float(value))
    if len(values) != num_epochs:
        hint = "return one mean loss per epoch"
        if len(values) == num_epochs * batches_per_epoch:
            hint = (f"you returned one loss per batch ({batches_per_epoch} batches x {num_epochs} epochs); "
                    "average the batch losses of each epoch and append that once per epoch")
        fail(case, f"{num_epochs} values (num_epochs={num_epochs})", f"{len(values)} values", hint)
    if not all(math.isfinite(v) for v in values):
        fail(case, "finite losses", str(values), "a NaN or inf loss: check the labels (-100 where ignored) and the loss")
    return values


def _run(case: str, fn: Callable, *args, **kwargs):
    """Call the student's training function quietly; name the usual causes of an exception."""
    try:
        with silenced():
            return fn(*args, **kwargs)
    except CheckError:
        raise
    except Exception as error:  # any error in student code is the student's to see
        text = f"{type(error).__name__}: {error}"
        hint = "run your function on the notebook's model to see the full traceback"
        if "set_stage" in text:
            hint = "freeze with set_stage(model, stage) (imported from tutor_lib above), not model.set_stage(stage)"
        elif "does not require grad" in text:
            hint = "the loss has no trainable parameter behind it: call set_stage before building the optimizer"
        fail(case, "no exception", text, hint)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


def _fresh_model(stage: int) -> MultimodalModel:
    """The tiny model a training case starts from; stage 2 starts from a stage-1 model (language model frozen)."""
    return tiny_model(None if stage == 1 else 1)


def _train(name: str, fn: Callable, model: MultimodalModel, data, question: str, num_epochs: int, batch_size: int,
           lr: float) -> tuple[str, list[float]]:
    """Run the student's function on the model; return the case's name and the per-epoch losses, checked."""
    n = len(data)
    case = f"{name}(model, dataset of {n}, num_epochs={num_epochs}, batch_size={batch_size}, lr={lr}): {question}"
    result = _run(case, fn, model, data, num_epochs=num_epochs, batch_size=batch_size, lr=lr)
    return case, _losses(case, result, num_epochs, n // batch_size)


def _case_masked_mean(name: str, fn: Callable, stage: int, data) -> float:
    """Case 1, lr=0 and one full batch: the reported number is the masked mean loss. Returns that loss."""
    n = len(data)
    model = _fresh_model(stage)
    right, mistakes = loss_candidates(stage, model, data)
    mistakes["the epoch's total divided by the number of samples, not of batches"] = right / n
    case, losses = _train(name, fn, model, data, "the loss of one full batch", 1, n, 0.0)
    if abs(losses[0] - right) <= TOLERANCE:
        return right
    found = [m for m, v in mistakes.items() if abs(v - losses[0]) <= TOLERANCE]
    if found:
        fail(case, f"{right:.6f} (mean next-token loss over the supervised text positions)",
             f"{losses[0]:.6f}, which is what you get with: {found[0]}", _hint_for(found[0]))
    fail(case, f"{right:.6f} (mean next-token loss over the supervised text positions, tolerance {TOLERANCE:g})",
         f"{losses[0]:.6f}",
         "with lr=0 the model does not change, so the loss must equal F.cross_entropy(logits[:, num_patches:], "
         "labels, ignore_index=-100) on the whole dataset")


def _case_epoch_means(name: str, fn: Callable, stage: int, data, right: float) -> None:
    """Case 2, lr=0 and three batches per epoch: one value per epoch, the mean over the epoch's batches."""
    batches = len(data) // 8
    case, losses = _train(name, fn, _fresh_model(stage), data, "per-epoch losses", 2, 8, 0.0)
    for epoch, value in enumerate(losses):
        if abs(value - right) <= TOLERANCE:
            continue
        hint = "each epoch's loss is the mean over all of its batches"
        if abs(value - right * batches) <= TOLERANCE * batches:
            hint = f"you returned the sum of the {batches} batch losses; divide by the number of batches"
        elif abs(value - right * batches / len(data)) <= TOLERANCE:
            hint = "you divided the sum of batch losses by the number of samples; divide by the number of batches"
        elif abs(losses[0] - losses[-1]) > TOLERANCE:
            hint = ("with lr=0 every epoch sees the same model, yet your epochs differ: did you report the last "
                    "batch's loss instead of the mean over the epoch?")
        fail(f"{case}, epoch {epoch + 1}", f"{right:.6f} (lr=0: every epoch's mean equals the full-data loss)",
             f"{value:.6f}", hint)


def _case_what_trains(name: str, fn: Callable, stage: int, data) -> str:
    """Case 3, lr=0.05: frozen boxes bit-identical, trainable ones changed, the vision encoder's flags off."""
    model = _fresh_model(stage)
    before = _snapshot(model)
    case, _ = _train(name, fn, model, data, "which parameters change", 2, 8, 0.05)
    after = _snapshot(model)
    changed = {box: [k for k in before if k.startswith(box + ".") and not equal(before[k], after[k])] for box in BOXES}
    must_change = ("projector",) if stage == 1 else ("projector", "language_model")
    what = "only the projector" if stage == 1 else "the projector and the language model"
    verb = "changes" if stage == 1 else "change"
    for box in (b for b in BOXES if b not in must_change):
        if changed[box]:
            hint = ("stage 1 trains only the projector: call set_stage(model, 1) and give the optimizer only the "
                    "parameters that require grad" if box == "language_model" else
                    "the vision encoder never trains: leave its requires_grad off and keep it out of the optimizer")
            fail(case, f"{what} {verb}; {box} bit-identical",
                 f"{box} changed: {', '.join(changed[box][:3])}{' ...' if len(changed[box]) > 3 else ''}", hint)
    for box in must_change:
        if not changed[box]:
            hint = (f"set_stage(model, {stage}) before building the optimizer, and pass it "
                    "[p for p in model.parameters() if p.requires_grad]")
            if stage == 2 and box == "language_model":
                hint = ("the model arrives from stage 1 with its language model frozen: call set_stage(model, 2) "
                        "before building the optimizer")
            fail(case, f"{what} {verb}", f"no parameter of {box} changed", hint)
    on = [k for k, p in model.vision_encoder.named_parameters() if p.requires_grad]
    if on:
        fail(case, "vision_encoder requires_grad off for every parameter", f"requires_grad on for {', '.join(on)}",
             "never switch the vision encoder on: LLaVA keeps its CLIP encoder frozen in both stages")
    return what


def _case_loss_goes_down(name: str, fn: Callable, stage: int, data) -> None:
    """Case 4, lr=0.01 and five full-batch epochs: the last epoch's loss is below the first's."""
    case, losses = _train(name, fn, _fresh_model(stage), data, "the loss goes down", 5, len(data), 0.01)
    if not losses[-1] < losses[0]:
        fail(case, f"last epoch's loss below the first's ({losses[0]:.4f})", f"{[round(v, 4) for v in losses]}",
             "each step: optimizer.zero_grad(), loss.backward(), optimizer.step(), in this order, on the same loss")


@contextlib.contextmanager
def reference_batches(fn: Callable):
    """While it runs, the notebook's build_caption_batch / build_instruction_batch are tutor_lib's.

    A training check tests the loop: a wrong batch builder already loses its own test's points, and
    should not take the training test's with it. The names are swapped in the namespace the student's
    function reads its globals from (the notebook's), and put back afterwards.
    """
    namespace = getattr(fn, "__globals__", None)
    references = {"build_caption_batch": _ref_caption_batch, "build_instruction_batch": _ref_instruction_batch}
    saved = {k: namespace[k] for k in references if k in namespace} if isinstance(namespace, dict) else {}
    namespace = namespace if saved else {}
    namespace.update({k: references[k] for k in saved})
    try:
        yield
    finally:
        namespace.update(saved)


def check_training(name: str, fn: Callable, stage: int, defaults: dict[str, float]) -> str:
    """Run the four tiny cases of the module docstring on a student's train_stage1 / train_stage2."""
    check_signature(name, fn, defaults)
    with rng(), reference_batches(fn):
        _manual_seed(0)
        data = tiny_dataset(seed=11)
        right = _case_masked_mean(name, fn, stage, data)
        _case_epoch_means(name, fn, stage, data, right)
        what = _case_what_trains(name, fn, stage, data)
        _case_loss_goes_down(name, fn, stage, data)
    return f"lr=0 loss equals the masked mean ({right:.4f}); one loss per epoch; {what} changed"
