"""What the checks of notebooks 05 (stage 1) and 06 (stage 2) share: batch helpers and the training checks.

A training function is run four times on a tiny model (16x16 images, 4 visual tokens, one
block) and a 24-sample dataset, each run asking one question:

1. lr=0, one full batch: is the reported loss the masked mean over exactly the supervised
   text positions? With lr=0 nothing moves, so the number must equal the reference loss of
   the untouched model to 1e-4.
2. lr=0, three batches per epoch, two epochs: one value per epoch, each the epoch's mean.
3. lr=0.05: which parameters changed (bit for bit) and which requires_grad flags are on.
4. lr=1e-2, full batch: does the loss go down at all?

When a case fails, the catalogue of the exercise (`training_loop`, the notebooks' loop, with one
mistake each) runs through the same case: a fresh tiny model with the same seed (so
torch.randperm draws the same batches), the same data. The mistakes that fail it exactly as the
student's function did (the same losses within the case's tolerance, the same changed boxes and
requires_grad flags, the same exception) are named. Only the mistakes that first show in that
case run, so a failure costs a few tenths of a second; a passing check runs none.

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
from dataclasses import dataclass, field, replace

import torch
from torch.random import get_rng_state as _get_rng_state
from torch.random import set_rng_state as _set_rng_state

from ..batching import build_caption_batch as _ref_caption_batch
from ..batching import build_instruction_batch as _ref_instruction_batch
from ..data import make_dataset
from ..model import ModelConfig, MultimodalModel
from ..model import set_stage as _ref_set_stage
from ..vocab import END, IGNORE_INDEX, PAD, decode
from ._common import CheckError, fail, quiet, raised, short
from ._mistakes import Mistake, catalogue, matching
from ._recipe_mistakes import (
    LM_TRAINABLE_IN_STAGE1,
    LOGITS_ONE_OFF_EFFECT,
    LOGITS_ONE_OFF_NAME,
    NO_END,
    PAD_LABELS,
    QUESTION_SUPERVISED,
    loss_logits_one_off,
)
from .trusted import cross_entropy, equal, rng, where
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


def reference_loss(stage: int, dataset) -> float:
    """The right full-batch loss of the untouched tiny model: the masked mean over the supervised text positions."""
    model = _fresh_model(stage)
    images, ids, labels = reference_tensors(stage, dataset)
    with _no_grad():
        logits = model(images, ids)[:, model.num_patches :]  # (B, L, V): position N + t predicts label t
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX).item()


# -- the catalogue: the reference loop with one mistake each ---------------------------------------

def _text_loss(model, images, input_ids, labels, reduction: str = "mean", divide_by: str = "") -> torch.Tensor:
    """The reference loss (F.cross_entropy over the text logits); `reduction`/`divide_by` give the wrong means."""
    text = model(images, input_ids)[:, model.num_patches :]  # (B, L, V)
    loss = cross_entropy(text.reshape(-1, text.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction=reduction)
    if divide_by == "positions":
        return loss / labels.numel()
    if divide_by == "samples":
        return loss / len(labels)
    return loss


def _loss_one_late(model, images, input_ids, labels) -> torch.Tensor:
    """The text logits sliced one position late: logits[:, N + 1:] against labels[:, :-1]."""
    text = model(images, input_ids)[:, model.num_patches + 1 :]
    return cross_entropy(text.reshape(-1, text.shape[-1]), labels[:, :-1].reshape(-1), ignore_index=IGNORE_INDEX)


def _loss_shifted_twice(model, images, input_ids, labels) -> torch.Tensor:
    """The labels shifted once more in the loop: logits[:, N:-1] against labels[:, 1:]."""
    text = model(images, input_ids)[:, model.num_patches : -1]
    return cross_entropy(text.reshape(-1, text.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)


def _loss_first_positions(model, images, input_ids, labels) -> torch.Tensor:
    """The first L positions (the image's) taken as the text logits: logits[:, :L]."""
    text = model(images, input_ids)[:, : input_ids.shape[1]]
    return cross_entropy(text.reshape(-1, text.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def _inputs_as_labels(build: Callable, *texts, padding: bool = False):
    """Labels not shifted: the input tokens themselves (padding ignored, or not)."""
    ids, _ = build(*texts)
    return ids, ids.clone() if padding else where(ids == PAD, IGNORE_INDEX, ids)


def _ignored_as_pad(build: Callable, *texts):
    """Every ignored label (question and padding) set to PAD (0) instead of -100."""
    ids, labels = build(*texts)
    return ids, where(labels == IGNORE_INDEX, PAD, labels)


def _caption_batch_without_end(captions):
    ids, labels = _ref_caption_batch(captions)
    return ids, where(labels == END, IGNORE_INDEX, labels)


def _no_set_stage(model, stage: int) -> None:
    """Nothing frozen or unfrozen: the model keeps the flags it arrived with."""


def _set_stage_method(model, stage: int) -> None:
    model.set_stage(stage)  # the seed's API: MultimodalModel has no such method


def _everything_trainable(model, stage: int) -> None:
    model.requires_grad_(True)


def _vision_left_trainable(model, stage: int) -> None:
    _ref_set_stage(model, stage)
    model.vision_encoder.requires_grad_(True)


def _other_stage(model, stage: int) -> None:
    _ref_set_stage(model, 3 - stage)


_BUILDERS = {1: _ref_caption_batch, 2: _ref_instruction_batch}
_STEPS = ("zero_grad", "backward", "step")


def training_loop(model, dataset, num_epochs: int, batch_size: int, lr: float, *, stage: int,
                  build: Callable | None = None, loss_of: Callable = _text_loss, freeze: Callable = _ref_set_stage,
                  freeze_after_optimizer: bool = False, optimizer_lr: float | None = None, maximize: bool = False,
                  steps: tuple[str, ...] = _STEPS, skip_last_batch: bool = False, report: str = "mean"):
    """The notebooks' train_stage1 / train_stage2 (`stage`); each keyword swaps in one mistake (defaults: none)."""
    if not freeze_after_optimizer:
        freeze(model, stage)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr if optimizer_lr is None else optimizer_lr, maximize=maximize)
    if freeze_after_optimizer:
        freeze(model, stage)
    samples = [dataset[i] for i in range(len(dataset))]
    texts = ([s["caption_tokens"] for s in samples],) if stage == 1 else \
        ([s["question_tokens"] for s in samples], [s["answer_tokens"] for s in samples])
    input_ids, labels = (build or _BUILDERS[stage])(*texts)
    images, n = dataset.images, len(samples)
    losses, total = [], 0.0
    for _ in range(num_epochs):
        order = torch.randperm(n)
        batch_losses = []
        if report != "not reset":
            total = 0.0
        for start in range(0, n - batch_size if skip_last_batch else n, batch_size):
            idx = order[start : start + batch_size]
            loss = loss_of(model, images[idx], input_ids[idx], labels[idx])
            for action in steps:
                if action == "zero_grad":
                    optimizer.zero_grad()
                elif action == "backward":
                    loss.backward()
                else:
                    optimizer.step()
            batch_losses.append(loss)
        values = [b.item() for b in batch_losses]
        total += sum(values)
        if report == "mean":
            losses.append(sum(values) / len(values))
        elif report == "not reset":
            losses.append(total / len(values))
        elif report == "last":
            losses.append(values[-1])
        elif report == "sum":
            losses.append(sum(values))
        elif report == "over samples":
            losses.append(sum(values) / n)
        elif report == "per batch":
            losses.extend(values)
        elif report == "tensor":
            losses.append(sum(batch_losses) / len(batch_losses))  # tensors that keep their graph
    return None if report == "nothing" else losses


DEFAULTS = {1: {"num_epochs": 30, "batch_size": 32, "lr": 1e-3}, 2: {"num_epochs": 50, "batch_size": 32, "lr": 5e-4}}


def _loop(stage: int, **mistake) -> Callable:
    """A drop-in train_stage<stage> (the exercise's signature and defaults) with one mistake switched on."""
    return functools.partial(training_loop, **DEFAULTS[stage], stage=stage, **mistake)


_HINT_MEAN = ("the loss is the mean over the supervised tokens: F.cross_entropy(text_logits.reshape(-1, V), "
              "labels.reshape(-1), ignore_index=-100) with its default reduction='mean'")
_HINT_SLICE = ("the logit at position num_patches + t predicts label t: the text logits are "
               "logits[:, model.num_patches:], and they line up with the labels as they are")
_HINT_EPOCH = "an epoch's loss is the mean of its batch losses: their sum divided by the number of batches"
_HINT_STEP = "each batch: optimizer.zero_grad(), loss.backward(), optimizer.step(), in this order"


def _catalogue(stage: int) -> dict[str, tuple[Mistake, ...]]:
    """This stage's mistakes, grouped by the case that first shows them (a failure runs only its case's group)."""
    other = 3 - stage
    build = _BUILDERS[stage]
    loss = [
        Mistake("loss summed instead of averaged", _loop(stage, loss_of=functools.partial(_text_loss, reduction="sum")),
                _HINT_MEAN),
        Mistake(LOGITS_ONE_OFF_NAME, _loop(stage, loss_of=loss_logits_one_off), _HINT_SLICE,
                effect=LOGITS_ONE_OFF_EFFECT),
        Mistake("logits sliced one position late: logits[:, N + 1:] with labels[:, :-1]",
                _loop(stage, loss_of=_loss_one_late), _HINT_SLICE),
        Mistake("labels shifted twice: logits[:, N:-1] with labels[:, 1:]", _loop(stage, loss_of=_loss_shifted_twice),
                "the batch builder's labels are already shifted: logits[:, model.num_patches:] line up with them "
                "as they are"),
        Mistake("the first L positions (the image's) used: logits[:, :L]", _loop(stage, loss_of=_loss_first_positions),
                "the first num_patches positions are the image; the text logits are logits[:, model.num_patches:]"),
        Mistake("labels not shifted: the input tokens used as labels",
                _loop(stage, build=functools.partial(_inputs_as_labels, build)),
                "the label at text position t is the token *after* input t: use the labels the batch builder returns"),
        Mistake("loss averaged over samples, not over supervised tokens",
                _loop(stage, loss_of=functools.partial(_text_loss, reduction="sum", divide_by="samples")),
                "divide the summed loss by the number of supervised tokens (labels != -100), not by the batch size"),
        Mistake("the epoch's total divided by the number of samples", _loop(stage, report="over samples"), _HINT_EPOCH),
        Mistake("loss tensors returned instead of floats", _loop(stage, report="tensor"),
                "append a Python float per epoch (loss.item()): a tensor keeps every step's autograd graph alive"),
        Mistake("model.set_stage(stage) called: MultimodalModel has no such method", _loop(stage, freeze=_set_stage_method),
                f"freeze with the function: set_stage(model, {stage}) (imported from tutor_lib above)"),
        Mistake("the last batch skipped: range(0, n - batch_size, batch_size)", _loop(stage, skip_last_batch=True),
                "loop over range(0, len(dataset), batch_size): the last batch may be smaller, and it counts too"),
        Mistake("the losses not returned", _loop(stage, report="nothing"), "end with `return losses`"),
    ]
    if stage == 1:
        loss.append(Mistake("<end> not supervised", _loop(stage, build=_caption_batch_without_end),
                            "the <end> after the caption is a label too: it is how the model learns to stop"))
    else:
        loss += [
            Mistake("labels not shifted, padding supervised: the input tokens used as labels",
                    _loop(stage, build=functools.partial(_inputs_as_labels, build, padding=True)),
                    "the label at text position t is the token *after* input t, and padding gets -100"),
            Mistake("loss averaged over every position, ignored ones included",
                    _loop(stage, loss_of=functools.partial(_text_loss, reduction="sum", divide_by="positions")),
                    "divide by the number of supervised positions (labels != -100), not by all positions"),
            Mistake("-100 replaced by PAD (0): question and padding positions supervised",
                    _loop(stage, build=functools.partial(_ignored_as_pad, build)),
                    "positions without a label keep -100 (IGNORE_INDEX): the question and the padding"),
            *(replace(m, fn=_loop(stage, build=m.fn)) for m in (PAD_LABELS, QUESTION_SUPERVISED, NO_END)),
        ]
    epochs = [
        Mistake("the last batch's loss reported for the epoch", _loop(stage, report="last"), _HINT_EPOCH),
        Mistake("the sum of the batch losses reported for the epoch", _loop(stage, report="sum"), _HINT_EPOCH),
        Mistake("one loss per batch returned, not one per epoch", _loop(stage, report="per batch"),
                "append one number per epoch: the mean of that epoch's batch losses"),
        Mistake("the epoch total not reset: each epoch adds the previous epochs' losses", _loop(stage, report="not reset"),
                "start each epoch's total at 0 inside the epoch loop"),
        Mistake("the lr argument ignored: the optimizer runs at lr=0.001", _loop(stage, optimizer_lr=1e-3),
                "build the optimizer with lr=lr: the check trains with other learning rates than the default"),
    ]
    if stage == 2:
        epochs.append(Mistake("the lr argument ignored: the optimizer runs at lr=0.0005", _loop(stage, optimizer_lr=5e-4),
                              "build the optimizer with lr=lr: the check trains with other learning rates than the default"))
    trains = [
        Mistake("optimizer.step() missing", _loop(stage, steps=("zero_grad", "backward")), _HINT_STEP),
        Mistake("loss.backward() missing", _loop(stage, steps=("zero_grad", "step")), _HINT_STEP),
        Mistake("optimizer.zero_grad() between backward and step: the gradients are gone",
                _loop(stage, steps=("backward", "zero_grad", "step")), _HINT_STEP),
        Mistake("set_stage not called", _loop(stage, freeze=_no_set_stage),
                f"call set_stage(model, {stage}) before building the optimizer"),
        Mistake(f"set_stage(model, {other}) called in stage {stage}", _loop(stage, freeze=_other_stage),
                f"stage {stage} is set_stage(model, {stage})" + (": only the projector trains" if stage == 1 else
                                                                 ": the projector and the language model train"),
                effect=LM_TRAINABLE_IN_STAGE1.effect if stage == 1 else ""),
        Mistake("every parameter made trainable: model.requires_grad_(True)", _loop(stage, freeze=_everything_trainable),
                f"freeze with set_stage(model, {stage}): the vision encoder never trains"),
        Mistake("the vision encoder left trainable", _loop(stage, freeze=_vision_left_trainable),
                "LLaVA keeps its vision encoder frozen in both stages: leave its requires_grad off"),
    ]
    if stage == 2:
        trains.append(Mistake("set_stage called after building the optimizer", _loop(stage, freeze_after_optimizer=True),
                              "call set_stage(model, 2) first: the optimizer takes the parameters that require grad "
                              "when it is built"))
    down = [Mistake("the loss maximised: Adam(..., maximize=True)", _loop(stage, maximize=True),
                    "minimise the loss: Adam's default maximize=False, and loss.backward() on the loss itself")]
    return {"loss": tuple(loss), "epochs": tuple(epochs), "trains": tuple(trains), "down": tuple(down)}


_BY_CASE = {1: _catalogue(1), 2: _catalogue(2)}
catalogue("train_stage1", *(m for group in _BY_CASE[1].values() for m in group))
catalogue("train_stage2", *(m for group in _BY_CASE[2].values() for m in group))


# -- the four cases ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Case:
    key: str  # its group of mistakes in the catalogue
    question: str
    num_epochs: int
    batch_size: int | None  # None: one batch of the whole dataset
    lr: float
    tolerance: float  # on the losses, relative to max(1, |loss|)


_CASES = (
    _Case("loss", "the loss of one full batch", 1, None, 0.0, TOLERANCE),
    _Case("epochs", "per-epoch losses", 2, 8, 0.0, TOLERANCE),
    _Case("trains", "which parameters change", 2, 8, 0.05, TOLERANCE),
    _Case("down", "the loss goes down", 5, None, 0.01, 1e-3),  # five Adam steps: float noise grows a little
)


@dataclass(frozen=True)
class _Run:
    """What one run of a training function did: what it returned or raised, and to which parameters."""
    result: object = None
    error: str = ""  # "TypeError: ..." when it raised
    changed: dict = field(default_factory=dict)  # box -> names of its parameters that changed
    flags: tuple[str, ...] = ()  # the parameters that require grad afterwards


@dataclass(frozen=True)
class _Failure:
    kind: str  # "error", "format" (what came back is no list of per-epoch floats), "values", "params"
    key: object  # what is compared with a catalogue mistake's failure
    expected: str
    received: str
    hint: str
    where: str = ""  # added to the case's name: ", epoch 2"


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


def _fresh_model(stage: int) -> MultimodalModel:
    """The tiny model a training case starts from; stage 2 starts from a stage-1 model (language model frozen)."""
    return tiny_model(None if stage == 1 else 1)


def _start(stage: int) -> tuple:
    """A fresh tiny model, its parameters and flags, and the random state right after building it."""
    model = _fresh_model(stage)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    return model, _snapshot(model), flags, _get_rng_state()


def _observe(fn: Callable, stage: int, data, case: _Case, start: tuple | None = None) -> _Run:
    """Run a training function on a fresh tiny model (same seed, so torch.randperm gives the same batches).

    start: from _start, to run on that model put back as it was built, from the same random state
    (for the catalogue's runs: the same as building it again, and cheaper).
    """
    if start is None:
        model = _fresh_model(stage)
    else:
        model, params, flags, state = start
        with _no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name])
                p.grad = None
                p.requires_grad_(flags[name])
        _set_rng_state(state)
    before = _snapshot(model) if case.key == "trains" else {}
    batch_size = case.batch_size or len(data)
    try:
        with silenced():
            result = fn(model, data, num_epochs=case.num_epochs, batch_size=batch_size, lr=case.lr)
    except CheckError:
        raise
    except NotImplementedError:  # the release's stub: say so rather than show an empty message
        return _Run(error="NotImplementedError: the function is still the stub; replace `raise NotImplementedError()` "
                          "with your code")
    except Exception as error:  # any error in student code is the student's to see
        return _Run(error=raised(error))
    if not before:
        return _Run(result)
    after = _snapshot(model)
    changed = {box: [k for k in before if k.startswith(box + ".") and not equal(before[k], after[k])] for box in BOXES}
    return _Run(result, changed=changed, flags=tuple(k for k, p in model.named_parameters() if p.requires_grad))


def _described(result: object) -> object:
    """What came back, comparable: ("type", name) or one entry per item (numbers as floats)."""
    if not isinstance(result, (list, tuple)):
        return ("type", type(result).__name__)
    items = []
    for value in result:
        if isinstance(value, torch.Tensor):
            number = value.detach().double().sum().item() if value.numel() else 0.0
            items.append(("tensor", tuple(value.shape), bool(value.requires_grad), number))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            items.append(float(value))
        else:
            items.append(("type", type(value).__name__))
    return tuple(items)


def _format_failure(run: _Run, case: _Case, n: int) -> _Failure | None:
    """None if the run returned one finite float (or 1-element tensor without graph) per epoch."""
    result, wanted = run.result, case.num_epochs

    def failure(expected: str, received: str, hint: str) -> _Failure:
        return _Failure("format", _described(result), expected, received, hint)

    if not isinstance(result, (list, tuple)):
        return failure(f"a list of per-epoch losses ({wanted} for num_epochs={wanted})",
                       f"{type(result).__name__}: {short(result)}",
                       "collect one number per epoch in a list and return it")
    for value in result:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                return failure("one number per epoch", f"a tensor of shape {tuple(value.shape)} in the list",
                               "append each epoch's mean loss as a float")
            if value.requires_grad:
                return failure("Python floats", "a tensor that still holds its autograd graph",
                               "append a float per epoch (loss.item()): a tensor keeps every step's graph alive")
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            return failure("Python floats", f"{type(value).__name__}: {short(value)}",
                           "append one float per epoch (loss.item())")
    if len(result) != wanted:
        batches = -(-n // (case.batch_size or n))
        return failure(f"{wanted} values, one per epoch (num_epochs={wanted}; {batches} batches per epoch)",
                       f"{len(result)} values: {short([round(float(v), 4) for v in result])}",
                       "return one value per epoch: the mean of that epoch's batch losses")
    values = [float(v) for v in result]
    if not all(math.isfinite(v) for v in values):
        return failure("finite losses", str(values), "the losses must be finite: look at the labels and the loss")
    return None


def _verdict(run: _Run, case: _Case, stage: int, n: int, right: float) -> _Failure | None:
    """None if the run answers the case right, else what failed (comparable with a catalogue mistake's)."""
    if run.error:
        return _Failure("error", run.error, "no exception", run.error,
                        "run your function on the notebook's model to see the full traceback")
    failure = _format_failure(run, case, n)
    if failure is not None:
        return failure
    losses = tuple(float(v) for v in run.result)
    if case.key == "loss" and abs(losses[0] - right) > TOLERANCE:
        return _Failure("values", losses,
                        f"{right:.6f} (mean next-token loss over the supervised text positions, tolerance {TOLERANCE:g})",
                        f"{losses[0]:.6f}",
                        "with lr=0 the model does not change, so the loss must equal F.cross_entropy(logits[:, "
                        "num_patches:], labels, ignore_index=-100) on the whole dataset")
    if case.key == "epochs":
        for epoch, value in enumerate(losses):
            if abs(value - right) > TOLERANCE:
                return _Failure("values", losses, f"{right:.6f} (lr=0: every epoch's mean equals the full-data loss)",
                                f"{value:.6f} (every epoch: {[round(v, 6) for v in losses]})",
                                "with lr=0 the model does not change: each epoch's value is the mean of its "
                                f"{-(-n // case.batch_size)} batch losses, the same every epoch", f", epoch {epoch + 1}")
    if case.key == "trains":
        return _params_failure(run, stage)
    if case.key == "down" and not losses[-1] < losses[0]:
        return _Failure("values", losses, f"last epoch's loss below the first's ({losses[0]:.4f})",
                        f"{[round(v, 4) for v in losses]}",
                        f"{_HINT_STEP}, on the loss the epoch reports, with the optimizer over the trainable parameters")
    return None


_WHAT_TRAINS = {1: ("projector",), 2: ("projector", "language_model")}


def what_trains(stage: int) -> str:
    return "only the projector" if stage == 1 else "the projector and the language model"


def _params_failure(run: _Run, stage: int) -> _Failure | None:
    """Case 3: the frozen boxes bit-identical, the trainable ones changed, the vision encoder's flags off."""
    must_change = _WHAT_TRAINS[stage]
    key = (tuple(box for box in BOXES if run.changed[box]), run.flags)
    verb = "changes" if stage == 1 else "change"
    where = ("what trains is what requires grad (set_stage) and is in the optimizer, with loss.backward() "
             "and optimizer.step() each batch")
    for box in (b for b in BOXES if b not in must_change):
        if run.changed[box]:
            names = run.changed[box]
            return _Failure("params", key, f"{what_trains(stage)} {verb}; {box} bit-identical",
                            f"{box} changed: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}",
                            f"stage {stage} trains {what_trains(stage)}: {where}")
    for box in must_change:
        if not run.changed[box]:
            flag = "on" if any(k.startswith(box + ".") for k in run.flags) else "off"
            hint = f"stage {stage} trains {what_trains(stage)}: {where}"
            if stage == 2 and box == "language_model":
                hint = f"the model arrives from stage 1 with its language model frozen; {hint}"
            return _Failure("params", key, f"{what_trains(stage)} {verb}",
                            f"no parameter of {box} changed (its requires_grad flags: {flag})", hint)
    on = [k for k in run.flags if k.startswith("vision_encoder.")]
    if on:
        return _Failure("params", key, "vision_encoder requires_grad off for every parameter",
                        f"requires_grad on for {', '.join(on[:3])}{' ...' if len(on) > 3 else ''}",
                        "LLaVA keeps its vision encoder frozen in both stages: its requires_grad stays off")
    return None


def _close(a: object, b: object, tolerance: float) -> bool:
    """a and b alike, their floats within tolerance (relative to max(1, |b|)); nan matches nan."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= tolerance * max(1.0, abs(b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b))
    return a == b


def _check_case(name: str, fn: Callable, stage: int, data, case: _Case, right: float) -> _Run:
    """Run one case; on a failure, name the catalogue mistakes that fail it the same way (same model, seed, data)."""
    n = len(data)
    run = _observe(fn, stage, data, case)
    failure = _verdict(run, case, stage, n, right)
    if failure is None:
        return run

    start = _start(stage)

    def outcome(mistake_fn: Callable) -> _Failure | None:
        return _verdict(_observe(mistake_fn, stage, data, case, start), case, stage, n, right)

    def same(received: _Failure, theirs: _Failure | None) -> bool:
        return theirs is not None and theirs.kind == received.kind and theirs.where == received.where \
            and _close(received.key, theirs.key, case.tolerance)

    matches = matching(_BY_CASE[stage][case.key], outcome, failure, same)
    title = (f"{name}(model, dataset of {n}, num_epochs={case.num_epochs}, batch_size={case.batch_size or n}, "
             f"lr={case.lr}): {case.question}{failure.where}")
    fail(title, failure.expected, failure.received, failure.hint, matches)


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
        right = reference_loss(stage, data)
        for case in _CASES:
            _check_case(name, fn, stage, data, case, right)
    return f"lr=0 loss equals the masked mean ({right:.4f}); one loss per epoch; {what_trains(stage)} changed"
