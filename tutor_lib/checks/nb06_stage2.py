"""Checks for notebook 06_stage2: build_instruction_batch, train_stage2 and answer_question.

build_instruction_batch is compared token for token with the layout of the exercise (one- and
multi-token answers, questions of different lengths). train_stage2 runs on a tiny model that
arrives from stage 1 (see _stages.py): with lr=0 its loss must be the masked mean over the
answer tokens and <end>, and the projector and language model must change while the vision
encoder stays bit-identical with requires_grad off. answer_question talks to a scripted fake
model whose greedy continuation is known in advance (multi-token answers, <end> at once, no
<end> at all), and to a tiny real model against the reference.

When a case fails, the exercise's catalogue of mistakes runs on the same inputs (for answer_question
a fresh scripted model, the same random state) and the message names every mistake whose output is
exactly the student's (see _mistakes.py); with no match it says only what was expected.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable

import torch
import torch.nn as nn

from ..data import make_dataset
from ..evaluate import answer_question as _ref_answer_question
from ..model import MultimodalModel
from ..vocab import END, IGNORE_INDEX, PAD, START, VOCAB, VOCAB_SIZE
from . import trusted
from ._batches import (
    batch_matches,
    expect_pair,
    first_difference,
    instruction_rows,
    mutation_matches,
    same_batch,
    same_output,
)
from ._common import CheckError, allclose, call, fail, passed, quiet, register, short
from ._mistakes import Mistake, catalogue, matching
from ._recipe_mistakes import NO_END, PAD_LABELS, QUESTION_SUPERVISED
from ._stages import TINY, check_training, rng, row_text, words

__all__ = ["check_build_instruction_batch", "check_train_stage2", "check_answer_question"]


# -- build_instruction_batch: the reference and its catalogue of mistakes ------------------------------

def _expected_instruction_batch(questions, answers) -> tuple[torch.Tensor, torch.Tensor]:
    return instruction_rows(questions, answers)


def instruction_unshifted(questions, answers):
    """labels = the supervised tokens of the inputs, not of sequence[1:]: the answer sits one position late."""
    return instruction_rows(questions, answers, labels_of=lambda q, a: [IGNORE_INDEX] * (len(q) + 1) + list(a))


def instruction_shifted_twice(questions, answers):
    """labels = the supervised tokens of sequence[2:]: the label at t is the token two after input t."""
    return instruction_rows(questions, answers, labels_of=lambda q, a: [IGNORE_INDEX] * (len(q) - 1) + [*a, END])


def instruction_labels_are_inputs(questions, answers):
    ids, _ = _expected_instruction_batch(questions, answers)
    return ids, ids.clone()


def instruction_mask_too_long(questions, answers):
    return instruction_rows(questions, answers, labels_of=lambda q, a: [IGNORE_INDEX] * (len(q) + 1) + [*a[1:], END])


def instruction_mask_too_short(questions, answers):
    return instruction_rows(questions, answers, labels_of=lambda q, a: [IGNORE_INDEX] * (len(q) - 1) + [q[-1], *a, END])


def instruction_question_masked_with_pad(questions, answers):
    return instruction_rows(questions, answers, labels_of=lambda q, a: [PAD] * len(q) + [*a, END])


def instruction_zero_instead_of_ignore(questions, answers):
    return instruction_rows(questions, answers, labels_of=lambda q, a: [PAD] * len(q) + [*a, END], label_pad=PAD)


def instruction_end_in_inputs(questions, answers):
    return instruction_rows(questions, answers, ids_of=lambda q, a: [START, *q, *a, END])


def instruction_inputs_padded_with_ignore(questions, answers):
    return instruction_rows(questions, answers, id_pad=IGNORE_INDEX)


def instruction_no_start(questions, answers):
    return instruction_rows(questions, answers, ids_of=lambda q, a: [*q, *a])


def instruction_answer_not_in_inputs(questions, answers):
    return instruction_rows(questions, answers, ids_of=lambda q, a: [START, *q])


def instruction_padded_left(questions, answers):
    return instruction_rows(questions, answers, left=True)


def instruction_appends_end(questions, answers):
    """answer.append(END) on the caller's lists, then the right batch."""
    for a in answers:
        a.append(END)
    return instruction_rows(questions, answers, ids_of=lambda q, a: [START, *q, *a[:-1]],
                            labels_of=lambda q, a: [IGNORE_INDEX] * len(q) + list(a))


INSTRUCTION_MISTAKES = catalogue(
    "build_instruction_batch",
    PAD_LABELS, QUESTION_SUPERVISED, NO_END,
    Mistake("labels not shifted: the answer's labels sit one position late", instruction_unshifted,
            "the label at position t is the token *after* input t: labels are sequence[1:], i.e. len(question) "
            "x -100, then answer + <end>"),
    Mistake("labels shifted twice: label t is the token two after input t", instruction_shifted_twice,
            "shift once: label t is the token right after input t, so labels are len(question) x -100, then "
            "answer + <end>"),
    Mistake("labels are a copy of input_ids", instruction_labels_are_inputs,
            "the label at position t is the token *after* input t: len(question) x -100, then answer + <end>"),
    Mistake("the mask is one position too long: the first answer token is not supervised",
            instruction_mask_too_long,
            "the first answer token is predicted at the position of the last question token: labels are "
            "len(question) x -100, then answer + <end>"),
    Mistake("the mask is one position too short: the last question token is supervised",
            instruction_mask_too_short,
            "labels are len(question) x -100, then answer + <end>: the first label is the token after <start> + "
            "the whole question"),
    Mistake("question masked with PAD (0) instead of -100", instruction_question_masked_with_pad,
            "positions that carry no loss get IGNORE_INDEX (-100); PAD (0) is a token the model would learn"),
    Mistake("0 used instead of -100 everywhere in the labels (question and padding)",
            instruction_zero_instead_of_ignore,
            "positions that carry no loss (question, padding) get IGNORE_INDEX (-100), not PAD (0)"),
    Mistake("<end> in the inputs: input_ids = <start> + question + answer + <end>", instruction_end_in_inputs,
            "<end> is only a label: input_ids are <start> + question + answer (the sequence without its last token)"),
    Mistake("input_ids padded with -100 instead of PAD (0)", instruction_inputs_padded_with_ignore,
            "pad input_ids with PAD (0): -100 is a label value, and nn.Embedding cannot look it up"),
    Mistake("<start> missing from the inputs", instruction_no_start,
            "every input row starts with <start> (id 1), then the question, then the answer"),
    Mistake("the answer missing from the inputs: input_ids = <start> + question", instruction_answer_not_in_inputs,
            "teacher forcing: the inputs hold the answer too (<start> + question + answer), so that each answer "
            "token is predicted from the ones before it"),
    Mistake("rows padded on the left", instruction_padded_left,
            "pad on the right: each row starts at position 0, padding comes after it"),
    Mistake("the caller's answers changed: answer.append(END)", instruction_appends_end,
            "do not change the caller's lists (append/extend do): build new ones, e.g. [START] + question + answer"),
)


def _instruction_case(fn, case: str, questions: list[list[int]], answers: list[list[int]]) -> None:
    original = copy.deepcopy((questions, answers))
    result = call(case, fn, questions, answers, hint="build_instruction_batch(questions, answers) takes two lists of token lists")
    if (questions, answers) != original:
        fail(f"{case}: the arguments afterwards", short(original), short((questions, answers)),
             "do not change the caller's lists: build new ones, e.g. [START] + question + answer",
             mutation_matches(INSTRUCTION_MISTAKES, original, (questions, answers)))
    expected = _expected_instruction_batch(*original)
    if same_batch(result, expected):
        return  # the passing path runs no catalogue
    matches = batch_matches(INSTRUCTION_MISTAKES, original, result)
    expected_ids, expected_labels = expected
    ids, labels = expect_pair(
        case, result, tuple(expected_ids.shape),
        f"(batch, longest 1 + question + answer) = {tuple(expected_ids.shape)}: inputs are <start> + question + answer, "
        "labels the same length", matches)
    for what, got, want, layout in (
            ("input_ids", ids, expected_ids, "input_ids are <start> + question + answer, padded on the right with "
                                             "PAD (0)"),
            ("labels", labels, expected_labels, "labels are len(question) x -100, then answer + <end>, padded on the "
                                                "right with -100: label t is the token after input t")):
        for i in range(len(want)):
            g, w = got[i].tolist(), want[i].tolist()
            if g != w:
                fail(f"{case}: {what}[{i}] for question '{words(questions[i])}', answer '{words(answers[i])}'",
                     row_text(w), row_text(g), f"{layout}; {first_difference(g, w)}", matches)


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


class _Misuse(CheckError):
    """The scripted model was called in a way the exercise rules out; `key` is what happened, for matching."""

    def __init__(self, case: str, expected: str, received: str, hint: str):
        super().__init__(case)
        self.case, self.expected, self.received, self.hint = case, expected, received, hint
        self.key = ("model misuse", expected, received)


def _misuse(case: str, expected: str, received: str, hint: str):
    raise _Misuse(case, expected, received, hint)


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
            _misuse(owner.case, f"at most max_new_tokens model calls for one answer (here {owner.max_new_tokens})",
                 f"more than {_MAX_CALLS} calls", "generate at most max_new_tokens new tokens, fewer when <end> comes")
        emb = embeddings.detach().cpu()
        if emb.dim() != 3 or emb.shape[-1] != _WIDTH:
            _misuse(owner.case, "embeddings (B, T, C) from encode_images and token_embedding",
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
            _misuse(self.case, f"images of shape (1, 3, {self.image_size}, {self.image_size})",
                 short(images) if not isinstance(images, trusted.Tensor) else f"shape {tuple(images.shape)}",
                 "the model takes a batch: pass image.unsqueeze(0) (or image[None])")
        self.images_seen.append(images.detach().cpu())
        out = trusted.zeros(images.shape[0], self.num_patches, _WIDTH, device=images.device)
        out[..., 0] = -1.0
        return out  # (B, N, 4)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(input_ids, trusted.Tensor) or input_ids.dim() != 2:
            _misuse(self.case, "input_ids of shape (1, L)", short(input_ids),
                 "the model takes a batch of token rows: torch.tensor([[START, *question_tokens, ...]])")
        visual = self.encode_images(images)
        text = self.language_model.token_embedding(input_ids.long())
        return self.language_model(torch.cat([visual, text], dim=1))  # (B, N + L, V)


# Bound when the checks are imported, before any notebook cell could rebind them.
_get_rng_state, _set_rng_state = torch.get_rng_state, torch.set_rng_state

# The catalogue: greedy decoding with one mistake each. A student's loop that never stops runs forever anyway;
# the catalogue's own stops after _NO_LIMIT tokens so that matching on the real model always ends.
_NO_LIMIT = 1000


def _last_argmax(logits: torch.Tensor, model, question_tokens) -> int:
    return int(logits[0, -1].argmax())


def _decode(model, image, question_tokens, max_new_tokens=5, *, start=True, pick=_last_argmax, stop_at_end=True,
            keep_end=False, feed_all=True, extra_steps=0, limit=True, returns="answer"):
    """Greedy decoding as the exercise asks, unless an option says otherwise (each option is one mistake)."""
    ids = trusted.tensor([[START, *question_tokens] if start else list(question_tokens)])
    fed, answer = ids, []
    steps = max_new_tokens + extra_steps if limit else _NO_LIMIT
    with trusted.no_grad():
        while len(answer) < steps:
            token = pick(model(image[None], fed), model, question_tokens)
            if token == END and stop_at_end:
                if keep_end:
                    answer.append(token)
                break
            answer.append(token)
            ids = trusted.cat([ids, trusted.tensor([[token]])], dim=1)
            fed = ids if feed_all else trusted.tensor([[token]])
    if returns == "tensor":
        return torch.tensor(answer)
    if returns == "tensors":
        return [torch.tensor(t) for t in answer]
    return ids[0].tolist() if returns == "sequence" else answer


def _sample(logits, model, question_tokens) -> int:
    return int(torch.multinomial(trusted.softmax(logits[0, -1], dim=-1), 1))


def _after_question(logits, model, question_tokens) -> int:
    return int(logits[0, model.num_patches + len(question_tokens)].argmax())


def _flat_argmax(logits, model, question_tokens) -> int:
    return int(logits.argmax())


def answer_no_batch_dim(model, image, question_tokens, max_new_tokens=5):
    ids, answer = trusted.tensor([[START, *question_tokens]]), []
    with trusted.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(image, ids)[0, -1].argmax())
            if token == END:
                break
            answer.append(token)
            ids = trusted.cat([ids, trusted.tensor([[token]])], dim=1)
    return answer


def answer_grows_the_question(model, image, question_tokens, max_new_tokens=5):
    """Builds the prompt in the caller's list: question_tokens.insert(0, START), then appends each token to it."""
    question_tokens.insert(0, START)
    answer = []
    with trusted.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(image[None], trusted.tensor([question_tokens]))[0, -1].argmax())
            if token == END:
                break
            answer.append(token)
            question_tokens.append(token)
    return answer


_GREEDY = "greedy decoding: the argmax of the last position's logits, appended to the input, which is fed whole again"
ANSWER_MISTAKES = catalogue(
    "answer_question",
    Mistake("<end> kept in the answer", functools.partial(_decode, keep_end=True),
            "stop at <end> and leave it out of the answer: it only says the answer is over"),
    Mistake("<end> ignored: generation goes on after it", functools.partial(_decode, stop_at_end=False),
            "stop at the first <end> (and leave it out of the answer)"),
    Mistake("<start> missing from the prompt", functools.partial(_decode, start=False),
            "the prompt is <start> + question, as in training"),
    Mistake("sampling instead of argmax", functools.partial(_decode, pick=_sample),
            "greedy decoding: each step takes the argmax of the last position's logits; nothing is drawn at random"),
    Mistake("no max_new_tokens limit: generates until <end>", functools.partial(_decode, limit=False),
            "stop after max_new_tokens new tokens, or earlier at <end>"),
    Mistake("one token too many: max_new_tokens + 1", functools.partial(_decode, extra_steps=1),
            "generate at most max_new_tokens new tokens: the answer has max_new_tokens tokens at most"),
    Mistake("only the newest token fed back, not the whole sequence", functools.partial(_decode, feed_all=False),
            "the model keeps no state between calls: feed the whole sequence (<start> + question + answer so far) "
            "each step, and take the argmax at the last position"),
    Mistake("logits read at a fixed position (after the question), not the last",
            functools.partial(_decode, pick=_after_question),
            "each step reads the logits at the *last* position (logits[0, -1]) of the sequence that now includes "
            "the tokens generated so far"),
    Mistake("argmax over all the logits flattened, not the last position's", functools.partial(_decode, pick=_flat_argmax),
            "logits are (1, positions, vocabulary): take logits[0, -1].argmax(), the best token at the last position"),
    Mistake("the prompt returned with the answer", functools.partial(_decode, returns="sequence"),
            "return only the new tokens: the answer after <start> + question, without <end>"),
    Mistake("a tensor returned instead of a list", functools.partial(_decode, returns="tensor"),
            "return a plain list of ints, e.g. answer (a list you appended next_id.item() to) or tensor.tolist()"),
    Mistake("a list of tensors returned: next_id appended instead of next_id.item()",
            functools.partial(_decode, returns="tensors"), "append next_id.item(), not the tensor itself"),
    Mistake("the image passed without its batch dimension", answer_no_batch_dim,
            "the model takes a batch: pass image.unsqueeze(0) (or image[None])"),
    Mistake("the caller's question_tokens changed: the prompt built in it", answer_grows_the_question,
            "do not change the caller's list: build the prompt as a new list, [START] + question_tokens"),
)


def _answer_outcome(fn: Callable, make_model: Callable, image, question, kwargs, rng_state: torch.Tensor) -> tuple:
    """Run fn on a fresh model and copies of the inputs -> ((what it returned or how it misused the model, the
    first text the scripted model read), model, the question list afterwards).

    The first text is part of the outcome because the scripted model answers every wrong prompt alike.
    """
    model, question_arg = make_model(), list(question)
    _set_rng_state(rng_state)  # the random state the student's function started from (sampling draws alike)
    try:
        with quiet():
            value = fn(model, image.clone(), question_arg, **kwargs)
    except _Misuse as misuse:
        value = misuse.key
    return (value, getattr(model, "first_text", None)), model, question_arg


def _answer_matches(make_model, image, question, kwargs, rng_state: torch.Tensor, received, part: int) -> list:
    """The mistakes whose outcome (part 0: the answer and first text; 2: the question list afterwards) is received."""
    after = _get_rng_state()
    try:
        return matching(ANSWER_MISTAKES,
                        lambda fn: _answer_outcome(fn, make_model, image, question, kwargs, rng_state)[part],
                        received, same_output)
    finally:
        _set_rng_state(after)


def _scripted_case(fn, case: str, question: list[int], script: list[int], max_new_tokens: int | None, image) -> None:
    limit = 5 if max_new_tokens is None else max_new_tokens
    make_model = functools.partial(_ScriptedModel, case, question, script, limit)
    model = make_model()
    kwargs = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    question_arg = list(question)
    state = _get_rng_state()  # cheap (unlike manual_seed): the catalogue starts from it when the case fails
    try:
        got = call(case, fn, model, image, question_arg, **kwargs,
                   hint="answer_question(model, image, question_tokens, max_new_tokens=5) returns a list of token ids")
    except _Misuse as misuse:
        fail(misuse.case, misuse.expected, misuse.received, misuse.hint,
             _answer_matches(make_model, image, question, kwargs, state, (misuse.key, model.first_text), 0))
    want = (script[: script.index(END)] if END in script else script)[:limit]
    hint = f"{_GREEDY}; stop at <end> (not part of the answer) or after max_new_tokens={limit}"
    if model.first_text is not None and model.first_text[: len(model.prompt)] != model.prompt:  # an observation
        hint = (f"the model was first given the text '{words(model.first_text)}'; the prompt is <start> + question "
                f"('{words(model.prompt)}')")
    _expect_answer(case, got, want, hint,
                   lambda: _answer_matches(make_model, image, question, kwargs, state, (got, model.first_text), 0))
    if question_arg != question:
        fail(f"{case}: question_tokens afterwards", question, question_arg,
             "do not change the caller's list: build the prompt as a new list, [START] + question_tokens",
             _answer_matches(make_model, image, question, kwargs, state, question_arg, 2))
    if model.images_seen and not allclose(model.images_seen[0], image[None]):
        fail(f"{case}: the image the model was given", "the image passed to answer_question, as a batch of one",
             f"a different tensor of shape {tuple(model.images_seen[0].shape)}", "pass image.unsqueeze(0) to the model")


def _expect_answer(case: str, got: object, want: list[int], hint: str, find_matches: Callable[[], list]) -> None:
    """Fail unless got is the list of ints `want`; only then run the catalogue (find_matches)."""
    if isinstance(got, list) and all(type(t) is int for t in got) and got == want:
        return  # the passing path runs no catalogue
    matches = find_matches()
    if not isinstance(got, list):
        fail(case, f"a list of token ids: {want}", f"{type(got).__name__}: {short(got)}",
             "return a plain list of ints, e.g. answer (a list you appended next_id.item() to) or tensor.tolist()",
             matches)
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in got):
        kinds = sorted({type(t).__name__ for t in got if not isinstance(t, int) or isinstance(t, bool)})
        fail(case, f"a list of Python ints: {want}", f"a list holding {', '.join(kinds)}: {short(got)}",
             "the answer is a list of ints: append next_id.item()", matches)
    fail(case, f"{row_text(want)}", f"{row_text(got)}", hint, matches)


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
            state = _get_rng_state()
            got = call(case, answer_question, model, sample["image"], list(sample["question_tokens"]), max_new_tokens=4)
            _expect_answer(case, got, want, f"{_GREEDY}; prompt <start> + question, stop at <end>",
                           functools.partial(_answer_matches, lambda: model, sample["image"], sample["question_tokens"],
                                             {"max_new_tokens": 4}, state, (got, None), 0))
    passed("answer_question", f"{len(cases)} scripted cases (multi-token, <end> at once, no <end>, max_new_tokens) "
           f"and {len(data)} answers of a real model match greedy decoding")

