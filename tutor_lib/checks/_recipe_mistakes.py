"""The five mistakes that matter most in LLaVA's recipe, with their measured effect on the model.

Each is the reference with one mistake, so it serves twice: in the catalogues of 03, 05 and 06
(a student's output that matches it is named, see _mistakes.py), and in effects.py, which
trains the real pipeline with it swapped in for tutor_lib.train's own function to measure what
it does to the model.
"""

from __future__ import annotations

from ..vocab import END, IGNORE_INDEX, PAD
from ._batches import instruction_rows
from ._mistakes import Mistake
from .trusted import cross_entropy


def batch_labels_padded_with_pad(questions, answers):
    """build_instruction_batch whose label rows are padded with PAD (0) instead of -100."""
    return instruction_rows(questions, answers, label_pad=PAD)


def batch_question_supervised(questions, answers):
    """build_instruction_batch whose labels are every next token, question included."""
    return instruction_rows(questions, answers, labels_of=lambda q, a: [*q, *a, END])


def batch_without_end(questions, answers):
    """build_instruction_batch whose labels stop after the answer, with no <end>."""
    return instruction_rows(questions, answers, labels_of=lambda q, a: [IGNORE_INDEX] * len(q) + [*a, IGNORE_INDEX])


def set_stage_lm_trainable_in_stage1(model, stage: int) -> None:
    """set_stage that leaves the language model trainable in stage 1 (as in stage 2)."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(True)


def loss_logits_one_off(model, images, input_ids, labels):
    """train.next_token_loss with the text logits sliced one position early: logits[:, N - 1:-1]."""
    logits = model(images, input_ids)  # (B, N + L, V)
    n = model.num_patches
    # Position N - 1 + t reads text input t - 1 but is trained on label t, the token two ahead of what it read.
    text = logits[:, n - 1 : -1]
    return cross_entropy(text.reshape(-1, text.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


PAD_LABELS = Mistake(
    "labels padded with PAD (0) instead of -100", batch_labels_padded_with_pad,
    "pad the labels with IGNORE_INDEX (-100): a PAD label is a target the model is trained to predict, and the loss "
    "becomes a mean over padding too; pad input_ids with PAD (0)",
    effect="pad_labels")
QUESTION_SUPERVISED = Mistake(
    "question tokens supervised: the labels are every next token", batch_question_supervised,
    "only the answer and its <end> carry labels: every position that predicts a question token gets -100",
    effect="question_supervised")
NO_END = Mistake(
    "<end> missing from the labels", batch_without_end,
    "the labels end with <end> after the answer: it is how the model learns to stop", effect="end_missing")
LM_TRAINABLE_IN_STAGE1 = Mistake(
    "the language model left trainable in stage 1", set_stage_lm_trainable_in_stage1,
    "stage 1 trains only the projector: language_model.requires_grad_(stage == 2)", effect="lm_trainable_stage1")
# The training loops' catalogues wrap loss_logits_one_off in a whole loop (see _stages.py).
LOGITS_ONE_OFF_NAME = "logits sliced one position off: logits[:, N - 1:-1]"
LOGITS_ONE_OFF_EFFECT = "logits_one_off"
