"""The main job from the command line: happy path, report schema, figures, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tutor_lib.cli import main

REPORT_KEYS = {"version", "config", "model", "device", "torch", "python", "held_out_configs", "parameters",
               "stage0", "seconds", "losses", "after_stage1", "accuracy", "figures"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = subprocess.run([sys.executable, "-m", "tutor_lib", "run", "--quick", "--stage2-epochs", "4",
                           "--output", str(out), "--seed", "3"], capture_output=True, text=True, timeout=300)
    return proc, out


def test_quick_run_succeeds_and_prints_what_matters(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "Trainable: 12,416 / 180,756 parameters (6.9%)" in text  # stage 1
    assert "Trainable: 147,860 / 180,756 parameters (81.8%)" in text  # stage 2
    assert "stage 2 epoch   4/4: loss" in text
    for row in ("IID test", "held-out test", "overall", "position"):
        assert row in text
    assert "stage 1:" in proc.stderr  # the tqdm progress bars


def test_report_schema(quick_run):
    _, out = quick_run
    report = json.loads((out / "report.json").read_text())
    assert set(report) == REPORT_KEYS
    assert report["config"]["seed"] == 3 and report["config"]["stage2_epochs"] == 4
    assert report["model"]["llm_dim"] == 64 and report["device"] == "cpu"
    assert len(report["losses"]["stage1"]) == 2 and len(report["losses"]["stage2"]) == 4
    assert set(report["seconds"]) == {"stage0", "data", "stage1", "stage2", "evaluation", "figures", "total"}
    assert report["stage0"]["source"] == "loaded from cache" and report["stage0"]["seed"] == 42
    assert report["stage0"]["seconds"] < 5  # loaded, not trained
    assert report["stage0"]["final_losses"]["language_model"] < 0.05
    assert report["parameters"] == {"total": 180_756, "stage1_trainable": 12_416, "stage2_trainable": 147_860}
    for split in ("test_iid", "test_heldout"):
        acc = report["accuracy"][split]
        assert set(acc) == {"caption", "overall", "color", "shape", "position", "n"}
        assert 0.0 <= acc["overall"] <= 1.0
        assert set(report["after_stage1"][split]) == set(acc)
    assert len(report["held_out_configs"]) == 6


def test_figures_are_written(quick_run):
    _, out = quick_run
    for name in ("loss_curves.png", "samples.png", "predictions.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_same_seed_same_report(quick_run, tmp_path, monkeypatch):
    _, out = quick_run
    monkeypatch.setenv("TUTOR_QUICK", "1")  # the one switch to run small: the same run as --quick
    assert main(["run", "--stage2-epochs", "4", "--output", str(tmp_path), "--seed", "3", "--no-progress"]) == 0
    first, second = (json.loads((d / "report.json").read_text()) for d in (out, tmp_path))
    assert first["losses"] == second["losses"] and first["accuracy"] == second["accuracy"]


@pytest.mark.parametrize("args, message", [
    (["run", "--seed", "abc"], "argument --seed: expected a whole number, got 'abc'"),
    (["run", "--stage1-epochs", "-2"], "argument --stage1-epochs: expected a number >= 0, got -2"),
    (["run", "--colour"], "unrecognized arguments: --colour"),
    (["run", "--device", "tpu", "--quick"], "error:"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_options_give_one_line_and_exit_2(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tutor_lib", *args, "--output", str(tmp_path / "o")]
                          if args[0] == "run" else [sys.executable, "-m", "tutor_lib", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_unavailable_device_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["run", "--quick", "--device", "cuda", "--output", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--quick", "--output", str(blocker / "sub")]) == 2
    assert "error" in capsys.readouterr().err


def test_from_scratch_skips_stage0_and_says_so(tmp_path, capsys):
    assert main(["run", "--quick", "--from-scratch", "--output", str(tmp_path), "--no-progress"]) == 0
    assert "Stage 0 skipped (--from-scratch)" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stage0"]["source"] == "from scratch (random parts)" and report["seconds"]["stage0"] == 0.0
    assert report["config"]["from_scratch"] is True


def test_run_reports_captions_and_zero_shot_answers_after_stage1(quick_run):
    proc, out = quick_run
    assert "After stage 1: greedy captions, and questions answered zero-shot" in proc.stdout
    assert "Stage 0 (pretrained parts) from" in proc.stdout and "loaded from cache" in proc.stdout


@pytest.mark.slow
def test_pretrain_writes_weights_that_run_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUTOR_CACHE", str(tmp_path))
    assert main(["pretrain", "--image-size", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "language_model  loss" in out and "vision_encoder  loss" in out
    written = list(tmp_path.glob("stage0-*.pt"))
    assert len(written) == 1 and f"wrote {written[0]}" in out
    from tutor_lib.model import MultimodalModel
    from tutor_lib.pretrain import load_stage0

    assert load_stage0(MultimodalModel(image_size=16), verbose=False)["source"] == str(written[0])


def test_pretrain_rejects_an_image_size_the_patches_do_not_divide(capsys):
    assert main(["pretrain", "--image-size", "20"]) == 2
    assert "multiple of the patch size 8" in capsys.readouterr().err


def test_gpu_check_says_in_one_line_when_there_is_no_gpu(root):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would run everything")
    proc = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode == 2 and proc.stdout.count("\n") == 1 and "CUDA is not available" in proc.stdout
