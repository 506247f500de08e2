"""Checks for notebook 06_stage2: build_instruction_batch, train_stage2 and answer_question.

build_instruction_batch is compared token for token with the layout of the exercise (one- and
multi-token answers, questions of different lengths). train_stage2 runs on a tiny model that
arrives from stage 1 (see _stages.py): with lr=0 its loss must be the masked mean over the
answer tokens and <end>, and the projector and language model must change while the vision
encoder stays bit-identical with requires_grad off. answer_question talks to a scripted fake
model whose greedy continuation is known in advance (multi-token answers, <end> at once, no
<end> at all), and to a tiny real model against the reference.
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.nn as nn

from ..data import make_dataset
from ..evaluate import answer_question as _ref_answer_question
from ..model import MultimodalModel
from ..vocab import END, IGNORE_INDEX, PAD, START, VOCAB, VOCAB_SIZE
from . import trusted
from ._common import allclose, call, fail, passed, quiet, register, short
from ._stages import TINY, check_training, expect_batch_tensors, first_bad_row, rng, row_text, words

__all__ = ["check_build_instruction_batch", "check_train_stage2", "check_answer_question"]


# -- build_instruction_batch -----------------------------------------------------------------------

def _expected_instruction_batch(questions, answers) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [[START, *q, *a] for q, a in zip(questions, answers)]
    label_rows = [[IGNORE_INDEX] * len(q) + [*a, END] for q, a in zip(questions, answers)]
    length = max(len(r) for r in rows)
    ids = [r + [PAD] * (length - len(r)) for r in rows]
    labels = [r + [IGNORE_INDEX] * (length - len(r)) for r in label_rows]
    return trusted.tensor(ids, dtype=torch.long), trusted.tensor(labels, dtype=torch.long)


def _inputs_hint(got: list[int], question: list[int], answer: list[int]) -> str:
    if not got or got[0] != START:
        return "every input row starts with <start> (id 1), then the question, then the answer"
    if END in got:
        return "<end> belongs to the labels only: inputs are <start> + question + answer"
    if IGNORE_INDEX in got:
        return "pad inputs with PAD (0); -100 is a label value, and nn.Embedding cannot look it up"
    if got[1 : 1 + len(question)] != question:
        return "the question comes right after <start>"
    if got[1 + len(question) : 1 + len(question) + len(answer)] != answer:
        return "the answer follows the question: inputs are <start> + question + answer (teacher forcing)"
    return "pad the inputs on the right with PAD (0)"


def _labels_hint(got: list[int], inputs: list[int], question: list[int], answer: list[int]) -> str:
    q, a = len(question), len(answer)
    if got == inputs:
        return "labels not shifted: the label at position t is the token *after* input t"
    if any(t != IGNORE_INDEX for t in got[: q - 1]):
        return ("question tokens supervised: every position that predicts a question token gets -100; only the "
                "answer and its <end> carry labels")
    if got[q - 1] != IGNORE_INDEX:
        return ("the mask is one position too short: the last question token is supervised too; labels are "
                "len(question) x -100, then answer + <end>")
    if got[q] == IGNORE_INDEX:
        if got[q + 1 : q + 1 + a] == answer:
            return "labels not shifted: the answer's labels sit one position late; labels are sequence[1:]"
        return ("the mask is one position too long: the first answer token is predicted at the position of the last "
                "question token, so labels are len(question) x -100, then answer + <end>")
    if END not in got:
        return "<end> missing: labels end with <end> after the answer, which is how the model learns to stop"
    if got[q : q + a + 1] == [*answer, END]:
        return "pad labels with IGNORE_INDEX (-100), not PAD (0), so padding carries no loss"
    return "labels: -100 for each question token, then answer + <end>, padded with -100"


def _instruction_case(fn, case: str, questions: list[list[int]], answers: list[list[int]]) -> None:
    original = copy.deepcopy((questions, answers))
    result = call(case, fn, questions, answers, hint="build_instruction_batch(questions, answers) takes two lists of token lists")
    if (questions, answers) != original:
        fail(f"{case}: the arguments afterwards", short(original), short((questions, answers)),
             "do not change the caller's lists (append/extend do): build new ones, e.g. [START] + question + answer")
    expected_ids, expected_labels = _expected_instruction_batch(questions, answers)
    ids, labels = expect_batch_tensors(
        case, result, tuple(expected_ids.shape),
        f"(batch, longest 1 + question + answer) = {tuple(expected_ids.shape)}: inputs are <start> + question + answer, "
        "labels the same length")
    i = first_bad_row(ids, expected_ids)
    if i >= 0:
        fail(f"{case}: input_ids[{i}] for question '{words(questions[i])}', answer '{words(answers[i])}'",
             row_text(expected_ids[i].tolist()), row_text(ids[i].tolist()),
             _inputs_hint(ids[i].tolist(), questions[i], answers[i]))
    i = first_bad_row(labels, expected_labels)
    if i >= 0:
        fail(f"{case}: labels[{i}] for question '{words(questions[i])}', answer '{words(answers[i])}'",
             row_text(expected_labels[i].tolist()), row_text(labels[i].tolist()),
             _labels_hint(labels[i].tolist(), ids[i].tolist(), questions[i], answers[i]))


@register
def check_build_instruction_batch(build_instruction_batch) -> None:
    """Inputs <start> + question + answer, labels -100 over the question then answer + <end>, padded."""
    v = VOCAB
    color, shape, where = [v[w] for w in ("what", "color", "?")], [v[w] for w in ("what", "shape", "?")], \
        [v[w] for w in ("where", "is", "it", "?")]
    cases = [
        ("build_instruction_batch([what color ?], [red])", [color], [[v["red"]]]),
        ("build_instruction_batch of three questions of lengths 3, 4 and 3 (padding)",
         [color, where, shape], [[v["blue"]], [v["top-left"]], [v["square"]]]),
        ("build_instruction_batch with two-word answers", [shape, where],
         [[v["red"], v["circle"]], [v["bottom-right"], v["center"]]]),
        ("build_instruction_batch: a short question with a long answer next to a long question with a short one",
         [[v["what"], v["?"]], where], [[v["green"], v["square"], v["center"]], [v["center"]]]),
    ]
    for case, questions, answers in cases:
        _instruction_case(build_instruction_batch, case, questions, answers)
    passed("build_instruction_batch", f"inputs and labels right for {len(cases)} batches: question masked, "
           "answer + <end> supervised, padding ignored")


# -- train_stage2 ----------------------------------------------------------------------------------

@register
def check_train_stage2(train_stage2) -> None:
    """Tiny-model runs from a stage-1 model: lr=0 loss is the masked answer loss, projector and LM train."""
    summary = check_training("train_stage2", train_stage2, stage=2,
                             defaults={"num_epochs": 50, "batch_size": 32, "lr": 5e-4})
    passed("train_stage2", summary)


# -- answer_question ---------------------------------------------------------------------------------

_WIDTH = 4  # channel 0: the token id (text) or -1 (image); channel 1: 1 for text positions
_MAX_CALLS = 40
_CONFUSED = VOCAB["is"]  # what the fake says when its context is not the prompt it expects
_AFTER_END = VOCAB["it"]  # what it says after its script is used up


class _IdEmbedding(nn.Module):
    """Embeds a token id as itself, so the fake language model can read the text back."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = trusted.zeros(*ids.shape, _WIDTH, device=ids.device)  # (B, L, 4)
        out[..., 0] = ids.float()
        out[..., 1] = 1.0
        return out


class _ScriptedLanguageModel(nn.Module):
    """Reads back the text; if it is <start> + question + script[:k], the next token is script[k]."""

    def __init__(self, owner: _ScriptedModel):
        super().__init__()
        self.token_embedding = _IdEmbedding()
        self._owner = [owner]  # a list, so the owner is not registered as a submodule (no cycle)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        owner = self._owner[0]
        owner.calls += 1
        if owner.calls > _MAX_CALLS:
            fail(owner.case, f"at most max_new_tokens model calls for one answer (here {owner.max_new_tokens})",
                 f"more than {_MAX_CALLS} calls", "stop after max_new_tokens new tokens, or earlier at <end>")
        emb = embeddings.detach().cpu()
        if emb.dim() != 3 or emb.shape[-1] != _WIDTH:
            fail(owner.case, "embeddings (B, T, C) from encode_images and token_embedding",
                 f"tensor of shape {tuple(emb.shape)}", "concatenate the visual tokens and the text embeddings on dim=1")
        B, T, _ = emb.shape
        logits = trusted.zeros(B, T, VOCAB_SIZE)
        for b in range(B):
            positions = [t for t in range(T) if emb[b, t, 1] > 0.5]
            text = [int(round(emb[b, t, 0].item())) for t in positions]
            if owner.first_text is None:
                owner.first_text = text
            for k, t in enumerate(positions):
                nxt = owner.next_token(text[: k + 1])
                logits[b, t, nxt] = 1.0
                logits[b, t, (nxt + 7) % VOCAB_SIZE] = 0.9  # a close runner-up: sampling would pick it often
        return logits.to(embeddings.device)  # (B, T, V)


class _ScriptedModel(nn.Module):
    """Looks like MultimodalModel (num_patches, encode_images, language_model, model(images, ids))."""

    num_patches = 3

    def __init__(self, case: str, question: list[int], script: list[int], max_new_tokens: int, image_size: int = 16):
        super().__init__()
        self.anchor = nn.Parameter(trusted.zeros(1))  # so next(model.parameters()).device works
        self.language_model = _ScriptedLanguageModel(self)
        self.case, self.prompt, self.script, self.max_new_tokens = case, [START, *question], script, max_new_tokens
        self.image_size = image_size
        self.calls = 0
        self.first_text: list[int] | None = None
        self.images_seen: list[torch.Tensor] = []

    def next_token(self, prefix: list[int]) -> int:
        p = len(self.prompt)
        if len(prefix) < p:
            return self.prompt[len(prefix)] if prefix == self.prompt[: len(prefix)] else _CONFUSED
        if prefix[:p] != self.prompt:
            return _CONFUSED
        k = len(prefix) - p
        if prefix[p:] != self.script[:k]:
            return _CONFUSED
        return self.script[k] if k < len(self.script) else _AFTER_END

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if not isinstance(images, trusted.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            fail(self.case, f"images of shape (1, 3, {self.image_size}, {self.image_size})",
                 short(images) if not isinstance(images, trusted.Tensor) else f"shape {tuple(images.shape)}",
                 "the model takes a batch: pass image.unsqueeze(0) (or image[None])")
        self.images_seen.append(images.detach().cpu())
        out = trusted.zeros(images.shape[0], self.num_patches, _WIDTH, device=images.device)
        out[..., 0] = -1.0
        return out  # (B, N, 4)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(input_ids, trusted.Tensor) or input_ids.dim() != 2:
            fail(self.case, "input_ids of shape (1, L)", short(input_ids),
                 "the model takes a batch of token rows: torch.tensor([[START, *question_tokens, ...]])")
        visual = self.encode_images(images)
        text = self.language_model.token_embedding(input_ids.long())
        return self.language_model(torch.cat([visual, text], dim=1))  # (B, N + L, V)


def _answer_hint(got: list[int], want: list[int], model: _ScriptedModel, max_new_tokens: int) -> str:
    if model.first_text is not None and model.first_text[: len(model.prompt)] != model.prompt:
        return (f"the model was first given the text '{words(model.first_text)}'; the prompt is <start> + question "
                f"('{words(model.prompt)}')")
    if got == want + [END]:
        return "leave <end> out of the answer: it only says the answer is over"
    if END in got:
        return "stop at the first <end>, and do not include it"
    if len(got) > max_new_tokens:
        return f"generate at most max_new_tokens={max_new_tokens} tokens"
    if len(got) > 1 and all(t == got[0] for t in got):
        return ("each step reads the logits at the *last* position (logits[0, -1]) of the sequence that now includes "
                "the tokens generated so far")
    if _CONFUSED in got:
        return ("append each new token to the input and feed the whole sequence (<start> + question + answer so far) "
                "back to the model; take the argmax at the last position")
    if len(got) < len(want) and got == want[: len(got)]:
        return f"keep generating until <end> or max_new_tokens={max_new_tokens}"
    return "greedy decoding: take the argmax of the last position's logits, append it, repeat; stop at <end>"


def _scripted_case(fn, case: str, question: list[int], script: list[int], max_new_tokens: int | None, image) -> None:
    limit = 5 if max_new_tokens is None else max_new_tokens
    model = _ScriptedModel(case, question, script, limit)
    kwargs = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    question_arg = list(question)
    got = call(case, fn, model, image, question_arg, **kwargs,
               hint="answer_question(model, image, question_tokens, max_new_tokens=5) returns a list of token ids")
    want = (script[: script.index(END)] if END in script else script)[:limit]
    _expect_answer(case, got, want, lambda g: _answer_hint(g, want, model, limit))
    if question_arg != question:
        fail(f"{case}: question_tokens afterwards", question, question_arg,
             "do not change the caller's list: build the prompt as a new list, [START] + question_tokens")
    if model.images_seen and not allclose(model.images_seen[0], image[None]):
        fail(f"{case}: the image the model was given", "the image passed to answer_question, as a batch of one",
             f"a different tensor of shape {tuple(model.images_seen[0].shape)}", "pass image.unsqueeze(0) to the model")


def _expect_answer(case: str, got: object, want: list[int], hint) -> None:
    if not isinstance(got, list):
        fail(case, f"a list of token ids: {want}", f"{type(got).__name__}: {short(got)}",
             "return a plain list of ints, e.g. answer (a list you appended next_id.item() to) or tensor.tolist()")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in got):
        kinds = sorted({type(t).__name__ for t in got if not isinstance(t, int) or isinstance(t, bool)})
        fail(case, f"a list of Python ints: {want}", f"a list holding {', '.join(kinds)}: {short(got)}",
             "append next_token.item(), not the tensor itself")
    if got != want:
        fail(case, f"{row_text(want)}", f"{row_text(got)}", hint(got))


@register
def check_answer_question(answer_question) -> None:
    """Greedy decoding against a scripted fake model, then a tiny real model against the reference."""
    try:
        signature = inspect.signature(answer_question)
    except (TypeError, ValueError):
        fail("signature", "a function", short(answer_question), "define answer_question with `def`")
    default = signature.parameters.get("max_new_tokens")
    if default is None or default.default != 5:
        fail("signature", "answer_question(model, image, question_tokens, max_new_tokens=5)",
             f"answer_question{signature}", "keep the signature of the exercise")
    v = VOCAB
    color, shape, where = [v[w] for w in ("what", "color", "?")], [v[w] for w in ("what", "shape", "?")], \
        [v[w] for w in ("where", "is", "it", "?")]
    with rng():
        trusted.manual_seed(5)
        image = torch.rand(3, 16, 16)
        never = [v[w] for w in ("red", "blue", "green", "circle", "square", "red", "blue", "green")]
        cases = [
            ("one-word answer 'red', then <end>", color, [v["red"], END], None),
            ("two-word answer 'red circle', then <end>", shape, [v["red"], v["circle"], END], None),
            ("four-word answer, then <end>", where, [v["top-left"], v["blue"], v["square"], v["center"], END], None),
            ("<end> straight away: the answer is empty", color, [END], None),
            ("no <end> at all: stop after max_new_tokens=5 (the default)", shape, never, None),
            ("no <end> at all, max_new_tokens=2", color, never, 2),
            ("<end> would be the 4th token, max_new_tokens=3", where, [v["green"], v["square"], v["center"], END], 3),
            ("max_new_tokens=0", color, [v["red"], END], 0),
        ]
        for case, question, script, max_new_tokens in cases:
            _scripted_case(answer_question, f"answer_question with a scripted model: {case}", question, script,
                           max_new_tokens, image)

        # A tiny real model: the student's answers equal the reference's greedy answers.
        trusted.manual_seed(6)
        model = MultimodalModel(TINY)
        data = make_dataset(6, image_size=TINY.image_size, seed=3)
        for i in range(len(data)):
            sample = data[i]
            case = (f"answer_question(tiny random model, image {i}, '{words(sample['question_tokens'])}', "
                    "max_new_tokens=4)")
            with quiet():
                want = _ref_answer_question(model, sample["image"], sample["question_tokens"], max_new_tokens=4)
            got = call(case, answer_question, model, sample["image"], list(sample["question_tokens"]), max_new_tokens=4)
            _expect_answer(case, got, want, lambda g: "compare your loop with greedy decoding on the real model: "
                           "prompt <start> + question, argmax at the last position, stop at <end>")
    passed("answer_question", f"{len(cases)} scripted cases (multi-token, <end> at once, no <end>, max_new_tokens) "
           f"and {len(data)} answers of a real model match greedy decoding")

