"""The checks of notebook 06_stage2 reject typical wrong implementations and accept correct ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from check_assertions import assert_accepts, assert_rejects

import tutor_lib
from tutor_lib.checks import CheckError, check_answer_question, check_build_instruction_batch, check_train_stage2
from tutor_lib.vocab import END, IGNORE_INDEX, PAD, START

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "06_stage2" / "06_stage2.ipynb"


pytestmark = pytest.mark.usefixtures("one_thread")  # as the notebooks run (tests/conftest.py)


# -- build_instruction_batch ------------------------------------------------------------------------

def _padded(rows, value):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def instruction_lists(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * len(q) + [*a, END] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, IGNORE_INDEX)


def instruction_masked_sequence(questions, answers):
    """Write the whole sequence, mark what is supervised, then shift: the LLaVA way."""
    inputs, labels = [], []
    for q, a in zip(questions, answers):
        sequence = torch.tensor([START, *q, *a, END])
        supervised = torch.tensor([False] * (1 + len(q)) + [True] * (len(a) + 1))
        inputs.append(sequence[:-1])
        labels.append(torch.where(supervised[1:], sequence[1:], IGNORE_INDEX))
    pad = torch.nn.utils.rnn.pad_sequence
    return pad(inputs, batch_first=True, padding_value=PAD), pad(labels, batch_first=True, padding_value=IGNORE_INDEX)


def instruction_question_supervised(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded([[*q, *a, END] for q, a in zip(questions, answers)], IGNORE_INDEX)


def instruction_mask_too_long(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * (len(q) + 1) + [*a[1:], END] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, IGNORE_INDEX)


def instruction_mask_too_short(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * (len(q) - 1) + [q[-1], *a, END] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, IGNORE_INDEX)


def instruction_unshifted(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * (len(q) + 1) + list(a) for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, IGNORE_INDEX)


def instruction_no_end(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * len(q) + [*a, IGNORE_INDEX] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, IGNORE_INDEX)


def instruction_labels_padded_with_pad(questions, answers):
    ids, labels = instruction_lists(questions, answers)
    width = [1 + len(q) + len(a) for q, a in zip(questions, answers)]
    for i, w in enumerate(width):
        labels[i, w:] = PAD
    return ids, labels


def instruction_mutates(questions, answers):
    for a in answers:
        a.append(END)
    ids = [[START, *q, *a[:-1]] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * len(q) + list(a) for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, IGNORE_INDEX)


@pytest.mark.parametrize("fn", [instruction_lists, instruction_masked_sequence, tutor_lib.build_instruction_batch])
def test_instruction_batch_accepts(fn, capsys):
    assert_accepts(check_build_instruction_batch, fn, capsys, "build_instruction_batch", only_output=False)


@pytest.mark.parametrize("fn, message", [
    (instruction_question_supervised, "question tokens supervised"),
    (instruction_mask_too_long, "one position too long"),
    (instruction_mask_too_short, "one position too short"),
    (instruction_unshifted, "labels not shifted"),
    (instruction_no_end, "<end> missing"),
    (instruction_labels_padded_with_pad, "pad labels with IGNORE_INDEX (-100), not PAD (0)"),
    (instruction_mutates, "do not change the caller's lists"),
])
def test_instruction_batch_rejects(fn, message):
    assert_rejects(check_build_instruction_batch, fn, message, parts=("expected:", "received:", "hint:"))


# -- train_stage2 -----------------------------------------------------------------------------------

def test_a_wrong_instruction_builder_costs_only_its_own_test(capsys):
    """The training test runs the loop on tutor_lib's build_instruction_batch: a right loop passes with a wrong builder."""
    namespace = _notebook_namespace()
    namespace["build_instruction_batch"] = instruction_question_supervised
    assert_rejects(check_build_instruction_batch, instruction_question_supervised, parts=("expected:", "received:"))
    assert_accepts(check_train_stage2, namespace["train_stage2"], capsys, "train_stage2", only_output=False)
    exec(_cell("test_train_stage2"), namespace)  # the hidden test case too
    assert "✓ train_stage2" in capsys.readouterr().out
    assert namespace["build_instruction_batch"] is instruction_question_supervised  # put back afterwards


# -- answer_question --------------------------------------------------------------------------------

def answer_loop(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = model(image.unsqueeze(0), ids)[0, -1].argmax().item()
            if token == END:
                break
            answer.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_cached(model, image, question_tokens, max_new_tokens=5):
    """Encode the image once, then run only the language model on [visual; text] embeddings."""
    with torch.no_grad():
        visual = model.encode_images(image[None])
        tokens = [START, *question_tokens]
        answer: list[int] = []
        while len(answer) < max_new_tokens:
            text = model.language_model.token_embedding(torch.tensor([tokens]))
            token = int(model.language_model(torch.cat([visual, text], dim=1))[0, -1].argmax())
            if token == END:
                return answer
            answer.append(token)
            tokens.append(token)
    return answer


def answer_truncates_afterwards(model, image, question_tokens, max_new_tokens=5):
    """Always generates max_new_tokens, then cuts at the first <end>: wasteful but right."""
    ids = torch.tensor([[START, *question_tokens]])
    for _ in range(max_new_tokens):
        ids = torch.cat([ids, model(image[None], ids)[:, -1:].argmax(-1)], dim=1)
    new = ids[0, 1 + len(question_tokens):].tolist()
    return new[: new.index(END)] if END in new else new


def answer_keeps_end(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    for _ in range(max_new_tokens):
        token = model(image[None], ids)[0, -1].argmax().item()
        answer.append(token)
        if token == END:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_ignores_end(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    for _ in range(max_new_tokens):
        ids = torch.cat([ids, model(image[None], ids)[:, -1:].argmax(-1)], dim=1)
    return ids[0, 1 + len(question_tokens):].tolist()


def answer_seed_single_argmax(model, image, question_tokens, max_new_tokens=5):
    """The seed's evaluation: one argmax at the position after the question, repeated."""
    ids = torch.tensor([[START, *question_tokens]])
    position = model.num_patches + len(question_tokens)
    answer = []
    for _ in range(max_new_tokens):
        token = model(image[None], ids)[0, position].argmax().item()
        if token == END:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_no_start(model, image, question_tokens, max_new_tokens=5):
    return _answer_from(model, image, list(question_tokens), max_new_tokens)  # forgot <start>


def _answer_from(model, image, prompt, max_new_tokens):
    ids = torch.tensor([prompt])
    answer = []
    for _ in range(max_new_tokens):
        token = model(image[None], ids)[0, -1].argmax().item()
        if token == END:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_sampling(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    for _ in range(max_new_tokens):
        probs = model(image[None], ids)[0, -1].softmax(-1)
        token = int(torch.multinomial(probs, 1))
        if token == END:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_no_limit(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    while True:
        token = model(image[None], ids)[0, -1].argmax().item()
        if token == END:
            return answer
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)


def answer_tensor(model, image, question_tokens, max_new_tokens=5):
    return torch.tensor(answer_loop(model, image, question_tokens, max_new_tokens))


def answer_tensor_items(model, image, question_tokens, max_new_tokens=5):
    return [torch.tensor(t) for t in answer_loop(model, image, question_tokens, max_new_tokens)]


def answer_no_batch_dim(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    for _ in range(max_new_tokens):
        token = model(image, ids)[0, -1].argmax().item()
        if token == END:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_only_last_token_fed(model, image, question_tokens, max_new_tokens=5):
    """Feeds only the newest token after the first step (as if the model kept a cache)."""
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    for _ in range(max_new_tokens):
        token = model(image[None], ids)[0, -1].argmax().item()
        if token == END:
            break
        answer.append(token)
        ids = torch.tensor([[token]])
    return answer


@pytest.mark.parametrize("fn", [answer_loop, answer_cached, answer_truncates_afterwards])
def test_answer_question_accepts(fn, capsys):
    assert_accepts(check_answer_question, fn, capsys, "answer_question", only_output=False)


def test_answer_question_accepts_the_notebook_solution(capsys):
    assert_accepts(check_answer_question, _notebook_namespace()["answer_question"], capsys, "answer_question",
                   only_output=False)


@pytest.mark.parametrize("fn, message", [
    (answer_keeps_end, "leave <end> out of the answer"),
    (answer_ignores_end, "stop at the first <end>"),
    (answer_seed_single_argmax, "at the *last* position"),
    (answer_no_start, "the prompt is <start> + question"),
    (answer_sampling, "greedy decoding"),
    (answer_no_limit, "stop after max_new_tokens"),
    (answer_tensor, "a list of token ids"),
    (answer_tensor_items, "a list of Python ints"),
    (answer_no_batch_dim, "pass image.unsqueeze(0)"),
    (answer_only_last_token_fed, "feed the whole sequence"),
])
def test_answer_question_rejects(fn, message):
    assert_rejects(check_answer_question, fn, message, parts=("expected:", "received:", "hint:"))


def test_answer_question_rejects_a_wrong_default():
    def answer_question(model, image, question_tokens, max_new_tokens=10):
        return answer_loop(model, image, question_tokens, max_new_tokens)

    with pytest.raises(CheckError, match="max_new_tokens=5"):
        check_answer_question(answer_question)


# -- the hidden tests of the notebook -----------------------------------------------------------------

def _cell(cell_id: str) -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c.get("id") == cell_id)["source"])


def _notebook_namespace() -> dict:
    namespace: dict = {}
    exec("import torch\nimport tutor_lib\nimport tutor_lib.checks\ndevice = torch.device('cpu')", namespace)
    for cell_id in ("imports", "build_instruction_batch", "train_stage2", "answer_question"):
        exec(_cell(cell_id), namespace)
    return namespace


@pytest.mark.parametrize("cell_id", ["test_build_instruction_batch", "test_train_stage2", "test_answer_question"])
def test_test_cells_pass_on_the_solution(cell_id, capsys):
    exec(_cell(cell_id), _notebook_namespace())
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("cell_id, name, reference", [
    ("test_build_instruction_batch", "build_instruction_batch", tutor_lib.batching.build_instruction_batch),
    ("test_train_stage2", "train_stage2", tutor_lib.train.train_stage2),
    ("test_answer_question", "answer_question", tutor_lib.evaluate.answer_question),
])
def test_hidden_tests_reject_the_reference(cell_id, name, reference):
    namespace = _notebook_namespace()
    namespace[name] = reference
    with pytest.raises(CheckError, match="is your own implementation"):
        exec(_cell(cell_id), namespace)


@pytest.mark.parametrize("cell_id, wrapper", [
    ("test_build_instruction_batch",
     "import tutor_lib.batching as B\ndef build_instruction_batch(questions, answers):\n"
     "    return B.build_conversation_batch([[(q, a)] for q, a in zip(questions, answers)])\n"),
    ("test_train_stage2", "def train_stage2(model, dataset, num_epochs=50, batch_size=32, lr=5e-4):\n"
                          "    return tutor_lib.train_stage2(model, dataset, num_epochs, batch_size, lr, progress=False)\n"),
    ("test_answer_question", "from tutor_lib.evaluate import generate\n"
                             "def answer_question(model, image, question_tokens, max_new_tokens=5):\n"
                             "    prompt = torch.tensor([[1, *question_tokens]])\n"
                             "    return generate(model, image[None], prompt, max_new_tokens)[0]\n"),
])
def test_hidden_tests_reject_a_wrapper_around_the_reference(cell_id, wrapper):
    namespace = _notebook_namespace()
    exec(wrapper, namespace)
    with pytest.raises(CheckError, match="is your own implementation"):
        exec(_cell(cell_id), namespace)
