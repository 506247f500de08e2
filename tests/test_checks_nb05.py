"""The checks of notebook 05_stage1 reject typical wrong implementations and accept correct ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from check_assertions import assert_accepts, assert_rejects
from stage_students import make_train

import tutor_lib
from tutor_lib.checks import CheckError, check_build_caption_batch, check_train_stage1
from tutor_lib.vocab import END, IGNORE_INDEX, PAD, START

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "05_stage1" / "05_stage1.ipynb"


pytestmark = pytest.mark.usefixtures("one_thread")  # as the notebooks run (tests/conftest.py)


# -- build_caption_batch --------------------------------------------------------------------------

def caption_loop(captions):
    length = max(len(c) for c in captions) + 1
    ids = torch.full((len(captions), length), PAD, dtype=torch.long)
    labels = torch.full((len(captions), length), IGNORE_INDEX, dtype=torch.long)
    for i, c in enumerate(captions):
        ids[i, : len(c) + 1] = torch.tensor([START, *c])
        labels[i, : len(c) + 1] = torch.tensor([*c, END])
    return ids, labels


def caption_pad_sequence(captions):
    pad = torch.nn.utils.rnn.pad_sequence
    ids = pad([torch.tensor([START, *c]) for c in captions], batch_first=True, padding_value=PAD)
    labels = pad([torch.tensor([*c, END]) for c in captions], batch_first=True, padding_value=IGNORE_INDEX)
    return ids, labels


def _padded(rows, value):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def caption_unshifted(captions):
    return _padded([[START, *c] for c in captions], PAD), _padded([[START, *c] for c in captions], IGNORE_INDEX)


def caption_no_end(captions):
    return _padded([[START, *c] for c in captions], PAD), _padded([[*c, IGNORE_INDEX] for c in captions], IGNORE_INDEX)


def caption_labels_padded_with_pad(captions):
    return _padded([[START, *c] for c in captions], PAD), _padded([[*c, END] for c in captions], PAD)


def caption_inputs_padded_with_ignore(captions):
    return _padded([[START, *c] for c in captions], IGNORE_INDEX), _padded([[*c, END] for c in captions], IGNORE_INDEX)


def caption_end_in_inputs(captions):
    return _padded([[START, *c, END] for c in captions], PAD), _padded([[*c, END, IGNORE_INDEX] for c in captions], IGNORE_INDEX)


def caption_mutates(captions):
    for c in captions:
        c.append(END)
    return _padded([[START, *c[:-1]] for c in captions], PAD), _padded([list(c) for c in captions], IGNORE_INDEX)


def caption_float(captions):
    ids, labels = caption_loop(captions)
    return ids.float(), labels.float()


def caption_lists(captions):
    ids, labels = caption_loop(captions)
    return ids.tolist(), labels.tolist()


@pytest.mark.parametrize("fn", [caption_loop, caption_pad_sequence, tutor_lib.build_caption_batch])
def test_caption_batch_accepts(fn, capsys):
    assert_accepts(check_build_caption_batch, fn, capsys, "build_caption_batch", only_output=False)


def caption_labels_copy_inputs(captions):
    ids, _ = caption_loop(captions)
    return ids, ids.clone()


def caption_padding_swapped(captions):
    return _padded([[START, *c] for c in captions], IGNORE_INDEX), _padded([[*c, END] for c in captions], PAD)


def caption_no_start(captions):
    width = max(len(c) for c in captions) + 1
    ids = torch.full((len(captions), width), PAD, dtype=torch.long)
    labels = torch.full((len(captions), width), IGNORE_INDEX, dtype=torch.long)
    for i, c in enumerate(captions):
        ids[i, : len(c)] = torch.tensor(c)
        labels[i, : len(c) + 1] = torch.tensor([*c, END])
    return ids, labels


def caption_swapped(captions):
    """sequence[1:] as the input, sequence[:-1] as the labels."""
    rows = [[START, *c, END] for c in captions]
    return _padded([r[1:] for r in rows], PAD), _padded([r[:-1] for r in rows], IGNORE_INDEX)


def caption_left_padded(captions):
    width = max(len(c) for c in captions) + 1
    ids = [[PAD] * (width - len(c) - 1) + [START, *c] for c in captions]
    labels = [[IGNORE_INDEX] * (width - len(c) - 1) + [*c, END] for c in captions]
    return torch.tensor(ids), torch.tensor(labels)


def caption_shifted_twice(captions):
    """Shifts the labels in the batch, then once more (as if the loss shifted them too)."""
    ids, labels = caption_loop(captions)
    return ids, torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], dim=1)


# -- wrong variants that are in no catalogue: the message must name no mistake -------------------------

def caption_sorted_by_length(captions):
    """Sorts the batch longest first: every row right, in the wrong order."""
    return caption_loop(sorted(captions, key=len, reverse=True))


def caption_labels_padded_with_end(captions):
    return _padded([[START, *c] for c in captions], PAD), _padded([[*c, END] for c in captions], END)


def caption_too_narrow(captions):
    """Pads to the longest caption, not the longest caption + 1: the longest row loses its last token."""
    width = max(len(c) for c in captions)
    return (_padded([[START, *c][:width] for c in captions], PAD),
            _padded([[*c, END][:width] for c in captions], IGNORE_INDEX))


def caption_reversed(captions):
    return caption_loop([c[::-1] for c in captions])


@pytest.mark.parametrize("fn, message, names", [
    (caption_unshifted, "labels not shifted", "labels not shifted: labels = <start> + caption"),
    (caption_no_end, "<end> missing", "<end> missing from the labels"),
    (caption_labels_padded_with_pad, "pad the labels with IGNORE_INDEX (-100)",
     "labels padded with PAD (0) instead of -100"),
    (caption_inputs_padded_with_ignore, "pad input_ids with PAD (0)", "input_ids padded with -100 instead of PAD (0)"),
    (caption_end_in_inputs, "shape (1, 3)", "<end> in the inputs: input_ids = <start> + caption + <end>"),
    (caption_mutates, "do not change the caller's lists", "the caller's captions changed: caption.append(END)"),
    (caption_float, "dtype torch.int64 (long)", None),
    (caption_lists, "a torch.Tensor", None),
    (caption_labels_copy_inputs, "labels are caption + <end>", "labels are a copy of input_ids"),
    (caption_padding_swapped, "pad input_ids with PAD (0) and labels with IGNORE_INDEX (-100)",
     "padding values swapped: input_ids padded with -100, labels with PAD (0)"),
    (caption_no_start, "starts with <start>", "<start> missing from the inputs"),
    (caption_swapped, "input_ids = sequence[:-1]", "input_ids and labels swapped"),
    (caption_left_padded, "pad on the right", "rows padded on the left"),
    (caption_shifted_twice, "shift once", "labels shifted twice: label t is the token two after input t"),
    (caption_sorted_by_length, "input_ids[0] for caption [12, 14]", None),
    (caption_labels_padded_with_end, "labels[0] for caption [12, 14]", None),
    (caption_too_narrow, "received: shape (1, 2)", None),
    (caption_reversed, "the first difference is at position 1", None),
])
def test_caption_batch_rejects(fn, message, names):
    assert_rejects(check_build_caption_batch, fn, message, parts=("expected:", "received:", "hint:"), names=names)


def test_caption_batch_names_both_unshifted_mistakes_when_there_is_no_padding():
    """With no padding, labels = <start> + caption and labels = input_ids are the same batch: both are named."""
    message = assert_rejects(check_build_caption_batch, caption_unshifted, names=(
        "labels are a copy of input_ids", "labels not shifted: labels = <start> + caption"))
    assert message.index("labels are a copy of input_ids") < message.index("labels not shifted")


# -- train_stage1 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("builder, message", [
    (caption_no_end, "<end> missing"),
    (caption_reversed, "input_ids[0] for caption [10, 13]"),
], ids=["no-end", "reversed"])
def test_a_wrong_caption_builder_costs_only_its_own_test(builder, message, capsys):
    """The training test runs the loop on tutor_lib's build_caption_batch: a right loop passes with a wrong builder."""
    namespace = _notebook_namespace()
    namespace["build_caption_batch"] = builder
    names = "<end> missing from the labels" if builder is caption_no_end else None
    assert_rejects(check_build_caption_batch, builder, message, parts=("expected:", "received:"), names=names)
    assert_accepts(check_train_stage1, namespace["train_stage1"], capsys, "train_stage1", only_output=False)
    exec(_cell("test_train_stage1"), namespace)  # the hidden test case too
    assert "✓ train_stage1" in capsys.readouterr().out
    assert namespace["build_caption_batch"] is builder  # the notebook's own builder is put back


# -- the hidden tests of the notebook -----------------------------------------------------------------

def _cell(cell_id: str) -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c.get("id") == cell_id)["source"])


def _notebook_namespace() -> dict:
    """The notebook's imports and solutions, executed as the notebook would."""
    namespace: dict = {}
    exec("import torch\nimport tutor_lib\nimport tutor_lib.checks\ndevice = torch.device('cpu')", namespace)
    for cell_id in ("imports", "build_caption_batch", "train_stage1"):
        exec(_cell(cell_id), namespace)
    return namespace


@pytest.mark.parametrize("cell_id", ["test_build_caption_batch", "test_train_stage1"])
def test_test_cells_pass_on_the_solution(cell_id, capsys):
    exec(_cell(cell_id), _notebook_namespace())
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("cell_id, name, reference", [
    ("test_build_caption_batch", "build_caption_batch", tutor_lib.batching.build_caption_batch),
    ("test_train_stage1", "train_stage1", tutor_lib.train.train_stage1),
])
def test_hidden_tests_reject_the_reference(cell_id, name, reference):
    namespace = _notebook_namespace()
    namespace[name] = reference
    with pytest.raises(CheckError, match="is your own implementation"):
        exec(_cell(cell_id), namespace)


@pytest.mark.parametrize("cell_id, wrapper", [
    ("test_build_caption_batch", "def build_caption_batch(captions):\n    return tutor_lib.build_caption_batch(captions)\n"),
    ("test_train_stage1", "from tutor_lib.train import fit, caption_tensors\n"
                          "def train_stage1(model, dataset, num_epochs=30, batch_size=32, lr=1e-3):\n"
                          "    set_stage(model, 1)\n"
                          "    return fit(model, *caption_tensors(dataset), num_epochs, batch_size, lr, progress=False)\n"),
])
def test_hidden_tests_reject_a_wrapper_around_the_reference(cell_id, wrapper):
    namespace = _notebook_namespace()
    exec(wrapper, namespace)
    with pytest.raises(CheckError, match="is your own implementation"):
        exec(_cell(cell_id), namespace)


def test_hidden_tests_reject_a_wrong_stage1_the_visible_check_cannot_see():
    """The hidden inline case runs a batch size that does not divide the dataset."""
    namespace = _notebook_namespace()
    source = _cell("test_train_stage1").replace("tutor_lib.checks.check_train_stage1(train_stage1)\n", "")

    def train_stage1(model, dataset, num_epochs=30, batch_size=32, lr=1e-3):
        if len(dataset) % batch_size:
            raise ValueError("the dataset must split into whole batches")
        return make_train(1)(model, dataset, num_epochs, batch_size, lr)

    namespace["train_stage1"] = train_stage1
    with pytest.raises(CheckError, match="ValueError: the dataset must split into whole batches"):
        exec(source, namespace)
