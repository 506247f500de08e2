"""Stages 1 and 2 under DistributedDataParallel: 2 CPU processes (gloo) compute what one process computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tutor_lib import ModelConfig, MultimodalModel, make_dataset, set_stage
from tutor_lib.distributed import fit_ddp, world
from tutor_lib.train import fit, instruction_tensors

ROOT = Path(__file__).resolve().parent.parent
TINY = ModelConfig(image_size=16, patch_size=8, vision_dim=8, llm_dim=8, num_heads=1, num_layers=1)


def _setup(stage: int):
    torch.manual_seed(0)
    model = MultimodalModel(TINY)
    set_stage(model, stage)
    data = make_dataset(21, image_size=16, seed=3)  # 21 samples in global batches of 8: 8, 8, 5 (odd shares)
    return model, instruction_tensors(data)


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        results = {"world": world()}
        for stage in (1, 2):
            model, tensors = _setup(stage)
            losses = fit_ddp(model, *tensors, num_epochs=3, batch_size=8, lr=1e-2,
                             generator=torch.Generator().manual_seed(5), progress=False)
            results[stage] = {"losses": losses, "state": model.state_dict()}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Stages 1 and 2 trained by fit_ddp in 2 spawned CPU processes (gloo): rank 0's losses and weights."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(2, str(folder / "init"), str(folder / "rank0.pt")), nprocs=2,
                       start_method="spawn")
    return torch.load(folder / "rank0.pt", weights_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_two_processes_match_one_at_the_same_global_batch(two_processes, stage):
    assert two_processes["world"] == (0, 2)
    ddp = two_processes[stage]
    model, tensors = _setup(stage)
    single = fit(model, *tensors, 3, 8, 1e-2, progress=False, generator=torch.Generator().manual_seed(5))
    assert len(ddp["losses"]) == len(single) == 3
    assert ddp["losses"] == pytest.approx(single, abs=1e-6)
    assert single[-1] < single[0]  # it trained, so matching models below mean something
    # Compare what the two models compute, not every weight: the key bias of attention gets a gradient that is
    # zero in exact arithmetic (softmax ignores a constant added to every score), and Adam divides the round-off
    # of that zero by its own square root, so those entries wander differently in the two runs without any effect.
    trained = MultimodalModel(TINY)
    trained.load_state_dict(ddp["state"])
    images, input_ids, _ = tensors
    with torch.no_grad():
        torch.testing.assert_close(trained(images, input_ids), model(images, input_ids), atol=1e-4, rtol=1e-4)
    start = _setup(stage)[0].state_dict()
    changed = {n.split(".")[0] for n, v in ddp["state"].items() if not torch.equal(v, start[n])}
    assert changed == ({"projector"} if stage == 1 else {"projector", "language_model"})


def test_one_process_without_a_group_is_fit():
    model, tensors = _setup(2)
    losses = fit_ddp(model, *tensors, 2, 8, 1e-2, generator=torch.Generator().manual_seed(5), progress=False)
    reference, ref_tensors = _setup(2)
    expected = fit(reference, *ref_tensors, 2, 8, 1e-2, progress=False, generator=torch.Generator().manual_seed(5))
    assert losses == pytest.approx(expected, abs=1e-6)
    assert world() == (0, 1)


def test_fit_ddp_refuses_a_frozen_model_and_bad_sizes():
    model, tensors = _setup(2)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        fit_ddp(model, *tensors, 1, 0, 1e-2, progress=False)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="set_stage"):
        fit_ddp(model, *tensors, 1, 8, 1e-2, progress=False)


@pytest.mark.slow
def test_tutor_run_nproc_2(tmp_path):
    """`tutor run --nproc 2 --quick`: torchrun starts 2 gloo processes; rank 0 writes the report."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TUTOR_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "tutor_lib", "run", "--nproc", "2", "--quick", "--device", "cpu",
                           "--no-progress", "--output", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "x 2 processes (gloo)" in proc.stdout
    report = json.loads((tmp_path / "report_ddp.json").read_text())
    assert report["world_size"] == 2 and report["backend"] == "gloo"
    assert len(report["losses"]["stage2"]) == report["config"]["stage2_epochs"]
