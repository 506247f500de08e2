"""The training checks (train_stage1 of 05, train_stage2 of 06) reject wrong loops and accept right ones.

The students are tests/stage_students.py's make_train: one training loop with switches for the
mistakes students make (see _stages.py for the catalogue the checks match them against).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from check_assertions import assert_accepts, assert_rejects
from stage_students import make_train, make_train_per_batch

from tutor_lib.checks import CheckError, _stages, check_train_stage1, check_train_stage2
from tutor_lib.checks._mistakes import CATALOGUES
from tutor_lib.checks._recipe_mistakes import (
    LOGITS_ONE_OFF_EFFECT,
    LOGITS_ONE_OFF_NAME,
    NO_END,
    QUESTION_SUPERVISED,
    loss_logits_one_off,
)
from tutor_lib.vocab import PAD

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")  # as the notebooks run (tests/conftest.py)


def _notebook_namespace(name: str) -> dict:
    """The solution notebook's imports and solutions, executed as the notebook would."""
    cells = json.loads((ROOT / "solutions" / name / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    source = {c.get("id"): "".join(c["source"]) for c in cells}
    namespace: dict = {}
    exec("import torch\nimport tutor_lib\nimport tutor_lib.checks\ndevice = torch.device('cpu')", namespace)
    stage = "train_stage1" if name.startswith("05") else "train_stage2"
    builder = "build_caption_batch" if name.startswith("05") else "build_instruction_batch"
    for cell_id in ("imports", builder, stage):
        exec(source[cell_id], namespace)
    return namespace


# -- train_stage1 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [make_train(1), make_train_per_batch(1)], ids=["vectorised-adam", "per-batch-adamw"])
def test_train_stage1_accepts(fn, capsys):
    check_train_stage1(fn)
    assert "only the projector changed" in capsys.readouterr().out


def test_train_stage1_accepts_the_notebook_solution(capsys):
    namespace = _notebook_namespace("05_stage1")
    assert_accepts(check_train_stage1, namespace["train_stage1"], capsys, "train_stage1", only_output=False)


# Each wrong loop names the catalogue mistakes (tutor_lib/checks/_stages.py) that fail the same case the same way;
# names=None: no catalogued mistake does, and the message names none.
SET_STAGE_1 = ("set_stage not called", "set_stage(model, 2) called in stage 1")  # the fresh model: the same flags
NO_UPDATE = ("optimizer.step() missing", "loss.backward() missing",
             "optimizer.zero_grad() between backward and step: the gradients are gone")  # no parameter moves


@pytest.mark.parametrize("mistake, message, names", [
    ({"freeze": "none", "all_parameters": True}, "language_model changed", SET_STAGE_1),
    ({"freeze": "none"}, "call set_stage(model, 1)", SET_STAGE_1),
    ({"freeze": "other_stage"}, "language_model changed", SET_STAGE_1),
    ({"freeze": "everything_on", "all_parameters": True}, "language_model changed",
     "every parameter made trainable: model.requires_grad_(True)"),
    ({"freeze": "vision_on"}, "requires_grad on for vision_encoder", "the vision encoder left trainable"),
    ({"slice_offset": -1}, "logits sliced one position off", LOGITS_ONE_OFF_NAME),
    ({"slice_offset": 1}, "logits sliced one position late", "logits sliced one position late: logits[:, N + 1:] "
                                                             "with labels[:, :-1]"),
    ({"slice_offset": "image"}, "logits[:, :L]", "the first L positions (the image's) used: logits[:, :L]"),
    ({"slice_offset": "twice"}, "already shifted", "labels shifted twice: logits[:, N:-1] with labels[:, 1:]"),
    ({"shift": False}, "labels not shifted", "labels not shifted: the input tokens used as labels"),
    ({"reduction": "sum"}, "summed instead of averaged", "loss summed instead of averaged"),
    ({"reduction": "samples"}, "not by the batch size", "loss averaged over samples, not over supervised tokens"),
    ({"end_supervised": False}, "the <end> after the caption is a label too", "<end> not supervised"),
    ({"epoch_value": "per_batch"}, "one loss per batch", "one loss per batch returned, not one per epoch"),
    ({"epoch_value": "last"}, "last batch's loss", "the last batch's loss reported for the epoch"),
    ({"epoch_value": "sum"}, "the sum of the batch losses", "the sum of the batch losses reported for the epoch"),
    ({"epoch_value": "per_sample"}, "divided by the number of samples",
     "the epoch's total divided by the number of samples"),
    ({"epoch_value": "tensor"}, "loss.item()", "loss tensors returned instead of floats"),
    ({"epoch_value": "not_reset"}, "epoch 2", "the epoch total not reset: each epoch adds the previous epochs' losses"),
    ({"epoch_value": "nothing"}, "NoneType", "the losses not returned"),
    ({"freeze": "method"}, "set_stage(model, 1)", "model.set_stage(stage) called: MultimodalModel has no such method"),
    ({"maximize": True}, "the loss goes down", "the loss maximised: Adam(..., maximize=True)"),
    # the example: no optimizer.step() was told to call set_stage before building the optimizer
    ({"steps": "zero_grad backward"}, "no parameter of projector changed", NO_UPDATE),
    ({"steps": "zero_grad step"}, "no parameter of projector changed", NO_UPDATE),
    ({"steps": "backward zero_grad step"}, "no parameter of projector changed", NO_UPDATE),
    ({"fixed_lr": 1e-3}, "epoch 1", "the lr argument ignored: the optimizer runs at lr=0.001"),
    ({"skip_last_batch": True}, "ZeroDivisionError", "the last batch skipped: range(0, n - batch_size, batch_size)"),
    # not in the catalogue: the message says what is expected and names no mistake
    ({"freeze": "swapped"}, "language_model changed", None),
    ({"epoch_value": "first"}, "epoch 1", None),
    ({"epoch_value": "median"}, "epoch 1", None),
    ({"fixed_lr": 5e-4}, "epoch 1", None),
    ({"label_smoothing": 0.1}, "the loss of one full batch", None),
    ({"detach_logits": True}, "does not require grad", None),
])
def test_train_stage1_rejects(mistake, message, names):
    assert_rejects(check_train_stage1, make_train(1, **mistake), message, names=names,
                   parts=("expected:", "received:", "hint:"))


def test_train_stage1_without_optimizer_step_is_not_sent_to_set_stage():
    """The issue's example: a loop that never steps was told to call set_stage before building the optimizer."""
    message = assert_rejects(check_train_stage1, make_train(1, steps="zero_grad backward"), names=NO_UPDATE)
    hint = message.split("hint:")[1]
    assert "optimizer.step()" in hint and "set_stage" not in hint, message


def test_train_stage1_rejects_a_wrong_signature():
    def train_stage1(model, dataset, epochs=30, batch_size=32, lr=1e-3):
        return make_train(1)(model, dataset, epochs, batch_size, lr)

    with pytest.raises(CheckError, match="keep the signature"):
        check_train_stage1(train_stage1)


def test_train_stage1_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_train_stage1(make_train(1))
    assert torch.equal(torch.rand(3), expected)



# -- train_stage2 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [make_train(2), make_train_per_batch(2)], ids=["vectorised-adam", "per-batch-adamw"])
def test_train_stage2_accepts(fn, capsys):
    check_train_stage2(fn)
    assert "the projector and the language model changed" in capsys.readouterr().out


def test_train_stage2_accepts_the_notebook_solution(capsys):
    train_stage2 = _notebook_namespace("06_stage2")["train_stage2"]
    assert_accepts(check_train_stage2, train_stage2, capsys, "train_stage2", only_output=False)


SET_STAGE_2 = ("set_stage not called", "set_stage(model, 1) called in stage 2")  # it arrives with stage 1's flags
VISION_ON = ("the vision encoder left trainable", "every parameter made trainable: model.requires_grad_(True)")


@pytest.mark.parametrize("mistake, message, names", [
    ({"question_supervised": True}, "question tokens supervised", QUESTION_SUPERVISED.name),
    ({"pad_labels_with": PAD}, "question and padding positions supervised",
     "-100 replaced by PAD (0): question and padding positions supervised"),
    ({"slice_offset": -1}, "logits sliced one position off", LOGITS_ONE_OFF_NAME),
    ({"slice_offset": 1}, "logits sliced one position late", "logits sliced one position late: logits[:, N + 1:] "
                                                             "with labels[:, :-1]"),
    ({"slice_offset": "image"}, "logits[:, :L]", "the first L positions (the image's) used: logits[:, :L]"),
    # in stage 2 label 0 is always -100 (a question token): shifting both sides again is the one-off slice exactly
    ({"slice_offset": "twice"}, "labels shifted twice",
     ("labels shifted twice: logits[:, N:-1] with labels[:, 1:]", LOGITS_ONE_OFF_NAME)),
    ({"shift": False}, "labels not shifted", "labels not shifted: the input tokens used as labels"),
    ({"shift": False, "pad_labels_with": PAD}, "padding gets -100",
     "labels not shifted, padding supervised: the input tokens used as labels"),
    ({"reduction": "sum"}, "summed instead of averaged", "loss summed instead of averaged"),
    ({"reduction": "samples"}, "not by the batch size", "loss averaged over samples, not over supervised tokens"),
    ({"reduction": "positions"}, "not by all positions", "loss averaged over every position, ignored ones included"),
    ({"end_supervised": False}, "<end>", NO_END.name),
    ({"epoch_value": "per_batch"}, "one loss per batch", "one loss per batch returned, not one per epoch"),
    ({"epoch_value": "last"}, "last batch's loss", "the last batch's loss reported for the epoch"),
    ({"epoch_value": "not_reset"}, "epoch 2", "the epoch total not reset: each epoch adds the previous epochs' losses"),
    ({"freeze": "none"}, "call set_stage(model, 2)", SET_STAGE_2),
    ({"freeze": "other_stage"}, "no parameter of language_model changed", SET_STAGE_2),
    ({"freeze": "everything_on", "all_parameters": True}, "requires_grad on for vision_encoder", VISION_ON),
    ({"freeze_after_optimizer": True}, "call set_stage(model, 2) first", "set_stage called after building the optimizer"),
    ({"freeze": "method"}, "set_stage(model, 2)", "model.set_stage(stage) called: MultimodalModel has no such method"),
    ({"maximize": True}, "the loss goes down", "the loss maximised: Adam(..., maximize=True)"),
    ({"steps": "zero_grad backward"}, "no parameter of projector changed", NO_UPDATE),
    ({"fixed_lr": 5e-4}, "epoch 1", "the lr argument ignored: the optimizer runs at lr=0.0005"),
    # not in the catalogue: the message says what is expected and names no mistake
    ({"freeze": "swapped"}, "changed", None),
    ({"epoch_value": "first"}, "epoch 1", None),
    ({"label_smoothing": 0.1}, "the loss of one full batch", None),
    ({"detach_logits": True}, "does not require grad", None),
])
def test_train_stage2_rejects(mistake, message, names):
    assert_rejects(check_train_stage2, make_train(2, **mistake), message, names=names,
                   parts=("expected:", "received:", "hint:"))


def test_train_stage2_says_what_must_change_in_plain_english():
    with pytest.raises(CheckError) as error:
        check_train_stage2(make_train(2, freeze="other_stage"))
    assert "expected: the projector and the language model change\n" in str(error.value), str(error.value)


# -- the catalogues -----------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, check", [(1, check_train_stage1), (2, check_train_stage2)])
def test_the_catalogues_loop_without_a_mistake_passes(stage, check, capsys):
    """Every catalogue entry is this loop with one switch on: the loop itself is right."""
    check(_stages._loop(stage))
    assert capsys.readouterr().out.startswith(f"✓ train_stage{stage}")


@pytest.mark.parametrize("stage", [1, 2])
def test_the_one_off_slice_entry_is_the_measured_one(stage):
    entry = next(m for m in CATALOGUES[f"train_stage{stage}"] if m.name == LOGITS_ONE_OFF_NAME)
    assert entry.effect == LOGITS_ONE_OFF_EFFECT and entry.fn.keywords["loss_of"] is loss_logits_one_off


def test_a_failure_runs_only_the_mistakes_of_its_case(monkeypatch):
    """A wrong loss (case 1) runs the mistakes that show in case 1, not the slower training cases' ones."""
    seen = []
    real = _stages.matching
    monkeypatch.setattr(_stages, "matching", lambda mistakes, *rest: seen.extend(mistakes) or real(mistakes, *rest))
    with pytest.raises(CheckError):
        check_train_stage1(make_train(1, reduction="sum"))
    assert seen == list(_stages._BY_CASE[1]["loss"])
