"""The torch functions the checks trust, bound once, when tutor_lib.checks is first imported.

Every notebook imports tutor_lib.checks in its locked setup cell, before any student code runs.
A later cell may rebind `torch.equal = lambda *a: True` or `F.cross_entropy = ...`; the checks
compute expected values and compare through the names below, which still point at the originals.
`verify_integrity()` (in the hidden tests) also fails when one of WATCHED was rebound.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Comparisons.
allclose = torch.allclose
equal = torch.equal
isfinite = torch.isfinite

# Tensor construction and randomness.
arange = torch.arange
cat = torch.cat
eye = torch.eye
fork_rng = torch.random.fork_rng
gather = torch.gather
manual_seed = torch.manual_seed
no_grad = torch.no_grad
ones = torch.ones
rand = torch.rand
randn = torch.randn
tensor = torch.tensor
where = torch.where
zeros = torch.zeros
Tensor = torch.Tensor

# Layers and functions the references are recomputed with.
cross_entropy = F.cross_entropy
gelu = F.gelu
linear = F.linear
log_softmax = F.log_softmax
one_hot = F.one_hot
relu = F.relu
softmax = F.softmax
Linear = nn.Linear
Module = nn.Module

# What verify_integrity() watches: label -> (owner, attribute, the original).
WATCHED = {
    "torch.equal": (torch, "equal", torch.equal),
    "torch.allclose": (torch, "allclose", torch.allclose),
    "torch.isclose": (torch, "isclose", torch.isclose),
    "torch.testing.assert_close": (torch.testing, "assert_close", torch.testing.assert_close),
    "torch.Tensor.__eq__": (torch.Tensor, "__eq__", torch.Tensor.__eq__),
    "torch.nn.functional.cross_entropy": (F, "cross_entropy", F.cross_entropy),
}


def rng():
    """Seed inside a check without touching the notebook's random state: `with rng(): manual_seed(0); ...`."""
    return fork_rng(devices=[])
