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

from tutor_lib.checks import CheckError, check_train_stage1, check_train_stage2
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


@pytest.mark.parametrize("mistake, message", [
    ({"freeze": "none", "all_parameters": True}, "language_model changed"),
    ({"freeze": "other_stage"}, "stage 1 trains only the projector"),
    ({"slice_offset": -1}, "logits sliced one position off"),
    ({"slice_offset": 1}, "logits sliced one position off"),
    ({"shift": False}, "labels not shifted"),
    ({"reduction": "sum"}, "summed instead of averaged"),
    ({"epoch_value": "per_batch"}, "one loss per batch"),
    ({"epoch_value": "last"}, "last batch's loss"),
    ({"epoch_value": "sum"}, "sum of the 3 batch losses"),
    ({"epoch_value": "per_sample"}, "divided by the number of samples"),
    ({"epoch_value": "tensor"}, "loss.item()"),
    ({"freeze": "method"}, "not model.set_stage(stage)"),
    ({"maximize": True}, "the loss goes down"),
])
def test_train_stage1_rejects(mistake, message):
    assert_rejects(check_train_stage1, make_train(1, **mistake), message, parts=("expected:", "received:", "hint:"))


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


@pytest.mark.parametrize("mistake, message", [
    ({"question_supervised": True}, "question tokens supervised"),
    ({"pad_labels_with": PAD}, "padding supervised"),
    ({"slice_offset": -1}, "logits sliced one position off"),
    ({"shift": False}, "labels not shifted"),
    ({"reduction": "sum"}, "summed instead of averaged"),
    ({"epoch_value": "per_batch"}, "one loss per batch"),
    ({"epoch_value": "last"}, "last batch's loss"),
    ({"freeze": "none"}, "call set_stage(model, 2)"),
    ({"freeze": "other_stage"}, "no parameter of language_model changed"),
    ({"freeze": "everything_on", "all_parameters": True}, "vision_encoder requires_grad off"),
])
def test_train_stage2_rejects(mistake, message):
    assert_rejects(check_train_stage2, make_train(2, **mistake), message, parts=("expected:", "received:", "hint:"))


def test_train_stage2_says_what_must_change_in_plain_english():
    with pytest.raises(CheckError) as error:
        check_train_stage2(make_train(2, freeze="other_stage"))
    assert "expected: the projector and the language model change\n" in str(error.value), str(error.value)
