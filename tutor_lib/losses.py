"""Next-token negative log-likelihood, by hand.

For one position with logits z (V,) and target token y, the loss is -log softmax(z)[y]
= logsumexp(z) - z[y]. Computing it as log(softmax(z)) overflows: exp(1000) is inf in
float32. Subtracting logsumexp first keeps every number finite.

A sequence's loss is the *mean* over the positions that carry a label: positions whose
label is IGNORE_INDEX (-100; the image, the question, the padding) are skipped. This is
what ``F.cross_entropy(..., ignore_index=-100)`` computes, and what LLaVA trains on.
"""

from __future__ import annotations

import torch

from .vocab import IGNORE_INDEX


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p(target) per row: logits (N, V), targets (N,) -> (N,)."""
    log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)  # (N, V), stable for large logits
    return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N,)


def masked_mean_nll(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean -log p(target) over positions whose target is not ignore_index: (..., V), (...) -> ()."""
    if logits.shape[:-1] != targets.shape:  # gather would silently read the first rows only
        raise ValueError(f"logits {tuple(logits.shape)} need targets of shape {tuple(logits.shape[:-1])}, "
                         f"got {tuple(targets.shape)}: slice the logits to the labelled positions first")
    logits = logits.reshape(-1, logits.shape[-1])  # (N, V)
    targets = targets.reshape(-1)  # (N,)
    keep = targets != ignore_index  # (N,)
    # Ignored positions get a harmless dummy target (0); the mask then drops them.
    nll = token_nll(logits, torch.where(keep, targets, 0))  # (N,)
    return (nll * keep).sum() / keep.sum()
