"""The loss by hand, and where the batch builders put the labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tutor_lib.batching import build_caption_batch, build_conversation_batch, build_instruction_batch
from tutor_lib.losses import masked_mean_nll, token_nll
from tutor_lib.vocab import END, IGNORE_INDEX, PAD, START, encode

X = IGNORE_INDEX


def test_token_nll_matches_cross_entropy_and_is_stable():
    g = torch.Generator().manual_seed(0)
    logits, targets = 1000 * torch.randn(8, 20, generator=g), torch.randint(20, (8,), generator=g)
    out = token_nll(logits, targets)
    assert out.shape == (8,) and torch.isfinite(out).all()
    assert torch.allclose(out, F.cross_entropy(logits, targets, reduction="none"), rtol=1e-5)


def test_worked_example_numbers():
    logits = torch.tensor([[2.0, 3.5, 0.5, 0.3, 0.2, 1.0], [0.5, 0.3, 2.8, 0.8, 0.5, 0.1], [0.1, 0.2, 0.5, 3.2, 0.3, 0.4]])
    nll = token_nll(logits, torch.tensor([1, 2, 3]))
    assert torch.exp(-nll).tolist() == pytest.approx([0.698, 0.673, 0.783], abs=1e-3)
    assert nll.mean().item() == pytest.approx(0.3334, abs=1e-4)  # the mean; the sum is 1.0002


def test_masked_mean_equals_cross_entropy_with_ignore_index():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(3, 5, 20, generator=g), torch.randint(20, (3, 5), generator=g)
    targets[0, :3] = X
    targets[2, 4] = X
    expected = F.cross_entropy(logits.reshape(-1, 20), targets.reshape(-1), ignore_index=X)
    assert torch.allclose(masked_mean_nll(logits, targets), expected)
    targets[targets == X] = 7
    assert torch.allclose(masked_mean_nll(logits, targets, ignore_index=7),
                          F.cross_entropy(logits.reshape(-1, 20), targets.reshape(-1), ignore_index=7))


def test_caption_batch_layout():
    inputs, labels = build_caption_batch([[10, 13], [11]])
    assert inputs.dtype == labels.dtype == torch.long
    assert inputs.tolist() == [[START, 10, 13], [START, 11, PAD]]
    assert labels.tolist() == [[10, 13, END], [11, END, X]]


def test_instruction_batch_masks_the_question():
    inputs, labels = build_instruction_batch([encode("what color ?"), encode("where is it ?")], [[10], [15]])
    assert inputs.tolist() == [[START, 3, 4, 9, 10, PAD], [START, 6, 7, 8, 9, 15]]
    assert labels.tolist() == [[X, X, X, 10, END, X], [X, X, X, X, 15, END]]


def test_conversation_batch_layout_and_one_turn_equivalence():
    q1, a1, q2, a2 = [3, 4, 9], [10], [20, 3, 5, 9], [13]
    inputs, labels = build_conversation_batch([[(q1, a1), (q2, a2)]])
    assert inputs.tolist() == [[START, *q1, *a1, END, *q2, *a2]]
    assert labels.tolist() == [[X, X, X, 10, END, X, X, X, X, 13, END]]
    one = build_conversation_batch([[(q1, a1)]])
    assert all(torch.equal(a, b) for a, b in zip(one, build_instruction_batch([q1], [a1])))


@pytest.mark.parametrize("call, message", [
    (lambda: build_caption_batch([]), "empty"),
    (lambda: build_conversation_batch([[]]), "no turns"),
    (lambda: build_instruction_batch([[3]], []), "1 questions but 0 answers"),
    (lambda: build_caption_batch([[10, -100]]), "negative token id"),
])
def test_bad_batches_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_every_sample_has_a_supervised_token():
    from tutor_lib.batching import pack_sequences

    with pytest.raises(ValueError, match="no supervised token"):
        pack_sequences([[([3, 4], False)]])


def test_masked_mean_nll_refuses_logits_and_targets_of_different_lengths():
    with pytest.raises(ValueError, match=r"logits \(2, 7, 5\) need targets of shape \(2, 7\), got \(2, 3\)"):
        masked_mean_nll(torch.zeros(2, 7, 5), torch.zeros(2, 3, dtype=torch.long))  # the image positions left in
