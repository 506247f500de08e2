"""Shared pytest set-up: notebook items are marked slow; xdist workers use one thread each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The shared assertions of the check tests report failures in pytest's detail, like asserts in the tests themselves.
pytest.register_assert_rewrite("check_assertions")

ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one thread each, for this process and the notebook kernels it starts.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.notebook)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture
def one_thread():
    """One CPU thread, as tutor_lib.setup gives the notebooks: the hidden test cells train tiny models outside
    the checks, and two threads on a busy machine made them several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
