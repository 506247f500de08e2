"""The checks of notebook 06_stage2 reject typical wrong implementations and accept correct ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from check_assertions import assert_accepts, assert_rejects, named_mistakes

import tutor_lib
from tutor_lib.checks import CheckError, check_answer_question, check_build_instruction_batch, check_train_stage2
from tutor_lib.checks._recipe_mistakes import NO_END, PAD_LABELS, QUESTION_SUPERVISED
from tutor_lib.checks.effects import effect_line
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


def instruction_labels_copy_inputs(questions, answers):
    ids, _ = instruction_lists(questions, answers)
    return ids, ids.clone()


def instruction_question_masked_with_pad(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded([[PAD] * len(q) + [*a, END] for q, a in zip(questions, answers)], IGNORE_INDEX)


def instruction_zero_for_ignore(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded([[0] * len(q) + [*a, END] for q, a in zip(questions, answers)], 0)


def instruction_end_in_inputs(questions, answers):
    """The whole sequence as input; labels sequence[1:] masked, padded to the same width."""
    rows = [[START, *q, *a, END] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * len(q) + [*a, END] for q, a in zip(questions, answers)]
    width = max(len(r) for r in rows)
    return _padded(rows, PAD), _padded([r + [IGNORE_INDEX] * (width - len(r)) for r in labels], IGNORE_INDEX)


def instruction_inputs_padded_with_ignore(questions, answers):
    ids, labels = instruction_lists(questions, answers)
    width = [1 + len(q) + len(a) for q, a in zip(questions, answers)]
    for i, w in enumerate(width):
        ids[i, w:] = IGNORE_INDEX
    return ids, labels


def instruction_no_start(questions, answers):
    ids, labels = instruction_lists(questions, answers)
    rows = [[*q, *a] for q, a in zip(questions, answers)]
    return _padded([r + [PAD] * (ids.shape[1] - len(r)) for r in rows], PAD), labels


def instruction_no_teacher_forcing(questions, answers):
    """Inputs are only <start> + question: the answer is left out of the inputs."""
    ids = [[START, *q] for q in questions]
    labels = [[IGNORE_INDEX] * len(q) + [*a, END] for q, a in zip(questions, answers)]
    width = max(len(r) for r in ids + labels)
    return _padded([r + [PAD] * (width - len(r)) for r in ids], PAD), _padded(labels, IGNORE_INDEX)


def instruction_left_padded(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * len(q) + [*a, END] for q, a in zip(questions, answers)]
    width = max(len(r) for r in ids)
    return (torch.tensor([[PAD] * (width - len(r)) + r for r in ids]),
            torch.tensor([[IGNORE_INDEX] * (width - len(r)) + r for r in labels]))


def instruction_shifted_twice(questions, answers):
    ids, labels = instruction_lists(questions, answers)
    return ids, torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], dim=1)


# -- wrong variants that are in no catalogue: the message must name no mistake -------------------------

def instruction_answer_before_question(questions, answers):
    ids = [[START, *a, *q] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * len(a) + [*q, END] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, IGNORE_INDEX)


def instruction_labels_padded_with_end(questions, answers):
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded([[IGNORE_INDEX] * len(q) + [*a, END] for q, a in zip(questions, answers)], END)


def instruction_rows_reversed(questions, answers):
    return instruction_lists(questions[::-1], answers[::-1])


def instruction_labels_padded_with_pad_and_no_end(questions, answers):
    """Two mistakes at once. The first batch has no padding, so there it is exactly NO_END, and named so."""
    ids = [[START, *q, *a] for q, a in zip(questions, answers)]
    labels = [[IGNORE_INDEX] * len(q) + [*a, IGNORE_INDEX] for q, a in zip(questions, answers)]
    return _padded(ids, PAD), _padded(labels, PAD)


@pytest.mark.parametrize("fn, message, names", [
    (instruction_question_supervised, "question tokens supervised", QUESTION_SUPERVISED.name),
    (instruction_mask_too_long, "one position too long", "the mask is one position too long: the first answer "
                                                          "token is not supervised"),
    (instruction_mask_too_short, "one position too short", "the mask is one position too short: the last question "
                                                            "token is supervised"),
    (instruction_unshifted, "labels not shifted", "labels not shifted: the answer's labels sit one position late"),
    (instruction_no_end, "<end> missing", NO_END.name),
    (instruction_labels_padded_with_pad, "pad the labels with IGNORE_INDEX (-100)", PAD_LABELS.name),
    (instruction_mutates, "do not change the caller's lists", "the caller's answers changed: answer.append(END)"),
    (instruction_labels_copy_inputs, "the token *after* input t", "labels are a copy of input_ids"),
    (instruction_question_masked_with_pad, "get IGNORE_INDEX (-100)", "question masked with PAD (0) instead of -100"),
    (instruction_zero_for_ignore, "PAD (0) is a token", "0 used instead of -100 everywhere in the labels (question and "
                                                  "padding)"),
    (instruction_end_in_inputs, "<end> is only a label", "<end> in the inputs: input_ids = <start> + question + "
                                                          "answer + <end>"),
    (instruction_inputs_padded_with_ignore, "pad input_ids with PAD (0)", "input_ids padded with -100 instead of "
                                                                          "PAD (0)"),
    (instruction_no_start, "starts with <start>", "<start> missing from the inputs"),
    (instruction_no_teacher_forcing, "teacher forcing", "the answer missing from the inputs: input_ids = <start> + "
                                                        "question"),
    (instruction_left_padded, "pad on the right", "rows padded on the left"),
    (instruction_shifted_twice, "shift once", "labels shifted twice: label t is the token two after input t"),
    (instruction_answer_before_question, "the first difference is at position 1", None),
    (instruction_labels_padded_with_end, "labels[0] for question", None),
    (instruction_rows_reversed, "input_ids[0] for question 'what color ?'", None),
    (instruction_labels_padded_with_pad_and_no_end, "labels[0] for question 'what color ?'", NO_END.name),
])
def test_instruction_batch_rejects(fn, message, names):
    assert_rejects(check_build_instruction_batch, fn, message, parts=("expected:", "received:", "hint:"), names=names)


def test_labels_padded_with_pad_are_not_called_question_tokens_supervised():
    """The issue's example: labels padded with PAD (0) were told "question tokens supervised"."""
    message = assert_rejects(check_build_instruction_batch, instruction_labels_padded_with_pad, names=PAD_LABELS.name,
                             parts=("expected:", "received:", "matches:", "hint:"))
    assert "question tokens supervised" not in message
    assert named_mistakes(message) == [PAD_LABELS.name]
    assert ("effect:" in message) == bool(effect_line(PAD_LABELS.effect))  # once effects.json has measured it


# -- train_stage2 -----------------------------------------------------------------------------------

def test_a_wrong_instruction_builder_costs_only_its_own_test(capsys):
    """The training test runs the loop on tutor_lib's build_instruction_batch: a right loop passes with a wrong builder."""
    namespace = _notebook_namespace()
    namespace["build_instruction_batch"] = instruction_question_supervised
    assert_rejects(check_build_instruction_batch, instruction_question_supervised, parts=("expected:", "received:"),
                   names=QUESTION_SUPERVISED.name)
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


def answer_one_too_many(model, image, question_tokens, max_new_tokens=5):
    return answer_loop_steps(model, image, question_tokens, max_new_tokens + 1)


def answer_loop_steps(model, image, question_tokens, steps):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    for _ in range(steps):
        token = model(image[None], ids)[0, -1].argmax().item()
        if token == END:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_flat_argmax(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    for _ in range(max_new_tokens):
        token = model(image[None], ids).argmax().item()
        if token == END:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_returns_prompt(model, image, question_tokens, max_new_tokens=5):
    ids = [START, *question_tokens]
    for _ in range(max_new_tokens):
        token = model(image[None], torch.tensor([ids]))[0, -1].argmax().item()
        if token == END:
            break
        ids.append(token)
    return ids


def answer_grows_the_question(model, image, question_tokens, max_new_tokens=5):
    question_tokens.insert(0, START)
    answer = []
    for _ in range(max_new_tokens):
        token = model(image[None], torch.tensor([question_tokens]))[0, -1].argmax().item()
        if token == END:
            break
        answer.append(token)
        question_tokens.append(token)
    return answer


# -- wrong variants that are in no catalogue: the message must name no mistake -------------------------

def answer_one_too_few(model, image, question_tokens, max_new_tokens=5):
    return answer_loop_steps(model, image, question_tokens, max(max_new_tokens - 1, 0))


def answer_second_to_last_position(model, image, question_tokens, max_new_tokens=5):
    ids = torch.tensor([[START, *question_tokens]])
    answer = []
    for _ in range(max_new_tokens):
        token = model(image[None], ids)[0, -2].argmax().item()
        if token == END:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def answer_sorted(model, image, question_tokens, max_new_tokens=5):
    return sorted(answer_loop(model, image, question_tokens, max_new_tokens))


def answer_prompt_end_start(model, image, question_tokens, max_new_tokens=5):
    """Puts <start> after the question instead of before it."""
    return _answer_from(model, image, [*question_tokens, START], max_new_tokens)


@pytest.mark.parametrize("fn, message, names", [
    (answer_keeps_end, "leave it out of the answer", "<end> kept in the answer"),
    (answer_ignores_end, "stop at the first <end>", "<end> ignored: generation goes on after it"),
    (answer_seed_single_argmax, "at the *last* position", "logits read at a fixed position (after the question), "
                                                          "not the last"),
    (answer_no_start, "the prompt is <start> + question", "<start> missing from the prompt"),
    (answer_sampling, "greedy decoding", "sampling instead of argmax"),
    (answer_no_limit, "stop after max_new_tokens", "no max_new_tokens limit: generates until <end>"),
    (answer_tensor, "a list of token ids", "a tensor returned instead of a list"),
    (answer_tensor_items, "a list of Python ints", "a list of tensors returned: next_id appended instead of "
                                                   "next_id.item()"),
    (answer_no_batch_dim, "pass image.unsqueeze(0)", "the image passed without its batch dimension"),
    (answer_only_last_token_fed, "feed the whole sequence", "only the newest token fed back, not the whole sequence"),
    (answer_one_too_many, "at most max_new_tokens", "one token too many: max_new_tokens + 1"),
    (answer_flat_argmax, "logits[0, -1].argmax()", "argmax over all the logits flattened, not the last position's"),
    (answer_returns_prompt, "return only the new tokens", "the prompt returned with the answer"),
    (answer_grows_the_question, "question_tokens afterwards", "the caller's question_tokens changed: the prompt "
                                                              "built in it"),
    (answer_one_too_few, "max_new_tokens=", None),
    (answer_second_to_last_position, "greedy decoding", None),
    (answer_sorted, "four-word answer", None),
    (answer_prompt_end_start, "the model was first given the text", None),
])
def test_answer_question_rejects(fn, message, names):
    assert_rejects(check_answer_question, fn, message, parts=("expected:", "received:", "hint:"), names=names)


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
