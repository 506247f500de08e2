"""tutor_lib.experiments and experiment_plots: step-exact training, paired seeds, tables, and tiny end-to-end runs."""

from __future__ import annotations

from dataclasses import replace

import matplotlib
import numpy as np
import pytest
import torch

import tutor_lib.pretrain as pretrain
from tutor_lib.augment import hflip_dataset, hflip_example
from tutor_lib.data import HELD_OUT_CONFIGS, make_dataset
from tutor_lib.experiment_plots import plot_arms, plot_augmentations, plot_panels
from tutor_lib.experiments import (
    _ALIGNED,
    FLIP_REACHABLE,
    ExperimentConfig,
    aligned_model,
    augment_with_example,
    augmentation_arms,
    caption_scores,
    coverage,
    cpu_threads,
    fit_steps,
    format_table,
    lm_drift,
    mirrored,
    new_model,
    run_augmentation,
    run_data_sweep,
    run_forgetting,
    split_by_configs,
    summary,
    table,
    without_color_questions,
)
from tutor_lib.model import MultimodalModel, set_stage
from tutor_lib.train import caption_tensors, instruction_tensors

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core CPU: one thread is much faster (see ExperimentConfig.num_threads)."""
    with cpu_threads(1):
        yield


# Random parts: 16-pixel images have no shipped stage-0 weights, and building them would take seconds.
TINY = ExperimentConfig(image_size=16, n_captions=40, n_test=12, n_heldout=12, stage1_steps=2, stage2_steps=3,
                        seeds=(0, 1), device="cpu", pretrained=False)
# Pretrained parts: 32-pixel images, whose seed-42 stage-0 weights ship with tutor_lib (loaded, never built).
TINY_PRETRAINED = replace(TINY, image_size=32, pretrained=True)


@pytest.fixture
def no_stage0_build(monkeypatch, tmp_path):
    """Fail a test that would pretrain stage 0 instead of loading the shipped weights (and keep ~/.cache clean)."""
    monkeypatch.setenv("TUTOR_CACHE", str(tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("stage 0 was built, not loaded from the shipped weights")

    monkeypatch.setattr(pretrain, "build_stage0", refuse)


def test_fit_steps_takes_exactly_the_requested_steps_and_is_seeded():
    data = make_dataset(10, image_size=16, seed=0)  # fewer samples than a batch: batches straddle passes
    runs = []
    for _ in range(2):
        model = new_model(TINY, 0)
        set_stage(model, 2)
        runs.append((fit_steps(model, *instruction_tensors(data), steps=5, lr=1e-3, batch_size=8, seed=3), model))
    (losses, a), (again, b) = runs
    assert len(losses) == 5 and losses == again
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="steps"):
        fit_steps(a, *instruction_tensors(data), steps=-1, lr=1e-3)


def test_stage1_steps_change_only_the_projector():
    model = new_model(TINY, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_stage(model, 1)
    fit_steps(model, *caption_tensors(make_dataset(16, image_size=16)), steps=2, lr=1e-3)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) != name.startswith("projector"), name


def test_new_model_is_paired_by_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = new_model(TINY, 5), new_model(TINY, 5), new_model(TINY, 6)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.projector.fc1.weight, c.projector.fc1.weight)


def test_pretrained_models_share_the_stage0_parts_and_differ_in_the_projector(no_stage0_build):
    assert ExperimentConfig().pretrained and ExperimentConfig().stage0_seed == 42
    a, b = new_model(TINY_PRETRAINED, 0), new_model(TINY_PRETRAINED, 1)
    reference = MultimodalModel(image_size=32)
    pretrain.load_stage0(reference, seed=42, progress=False, verbose=False)
    for model in (a, b):  # every run seed starts from the one seed-42 checkpoint
        for part in ("vision_encoder", "language_model"):
            for (name, p), q in zip(getattr(model, part).named_parameters(), getattr(reference, part).parameters()):
                assert torch.equal(p, q), f"{part}.{name}"
    assert not torch.equal(a.projector.fc1.weight, b.projector.fc1.weight)
    again = new_model(TINY_PRETRAINED, 0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), again.parameters()))
    random_lm = new_model(replace(TINY_PRETRAINED, pretrained=False), 0)
    assert not torch.equal(random_lm.language_model.token_embedding.weight, a.language_model.token_embedding.weight)


def test_aligned_model_trains_stage1_once_per_config_and_seed():
    _ALIGNED.clear()
    first = aligned_model(TINY, 0)
    assert len(_ALIGNED) == 1
    second = aligned_model(TINY, 0)
    assert len(_ALIGNED) == 1 and first is not second
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    fresh = new_model(TINY, 0)
    assert not torch.equal(first.projector.fc1.weight, fresh.projector.fc1.weight)
    assert torch.equal(first.language_model.output_head.weight, fresh.language_model.output_head.weight)


def test_cpu_threads_restores_the_setting():
    old = torch.get_num_threads()
    with cpu_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == old
    with cpu_threads(None):
        assert torch.get_num_threads() == old


def test_flip_reachable_triples_are_the_four_off_center_held_out_ones():
    assert len(FLIP_REACHABLE) == 4 and set(FLIP_REACHABLE) <= set(HELD_OUT_CONFIGS)
    assert all(mirrored(mirrored(c)) == c for c in HELD_OUT_CONFIGS)
    assert all(mirrored(c) == c for c in set(HELD_OUT_CONFIGS) - set(FLIP_REACHABLE))  # the two center triples


def test_split_by_configs_and_coverage():
    data = make_dataset(60, HELD_OUT_CONFIGS, image_size=16, seed=1)
    inside, outside = split_by_configs(data, FLIP_REACHABLE)
    assert len(inside) + len(outside) == len(data)
    assert inside.configs() <= set(FLIP_REACHABLE) and not outside.configs() & set(FLIP_REACHABLE)
    assert coverage(data) <= len(HELD_OUT_CONFIGS) * 3 and coverage(data.subset([0, 0, 0])) == 1


def test_augment_with_example_matches_hflip_dataset_and_arms_have_the_right_sizes():
    data = make_dataset(30, image_size=16, seed=2)
    flipped = augment_with_example(data, hflip_example)
    reference = hflip_dataset(data)
    assert torch.equal(flipped.images, reference.images) and torch.equal(flipped.positions, reference.positions)
    arms = augmentation_arms(hflip_example)
    sizes = {name: len(build(data, 0)) for name, build in arms.items()}
    n_no_color = len(without_color_questions(data))
    assert sizes == {"none": 30, "flip, swap": 60, "flip, no swap": 60, "hue jitter": 60,
                     "hue jitter, no color Qs": 30 + n_no_color}
    assert 0 < n_no_color < 30


def test_caption_scores_and_lm_drift():
    model = new_model(TINY, 0)
    scores = caption_scores(model, make_dataset(8, image_size=16))
    assert set(scores) == {"caption_loss", "caption_acc"} and np.isfinite(scores["caption_loss"])
    assert lm_drift(model, model) == 0.0
    other = new_model(TINY, 1)
    assert lm_drift(other, model) > 0


def test_table_summary_and_format_table():
    rows = [{"seed": s, "n": n, "arm": a, "acc": s / 10 + n / 1000} for s in (0, 1) for n in (10, 20) for a in "ab"]
    values = table(rows, "acc", "n", [10, 20], arm="a")
    assert values.shape == (2, 2) and values[1, 1] == pytest.approx(0.12)
    with pytest.raises(KeyError, match="no 'acc'"):
        table(rows, "acc", "n", [10, 30], arm="a")
    assert summary(np.array([0.5, 1.0])) == "75.0% (50.0-100.0)"
    assert summary(np.array([2.0, 4.0]), percent=False) == "3 (2-4)"
    text = format_table(rows, "n", [10, 20], [("A", "acc", {"arm": "a"}), ("B", "acc", {"arm": "b"})])
    assert text.splitlines()[0].split() == ["n", "A", "B"] and len(text.splitlines()) == 3


@pytest.mark.parametrize("pretrained", [False, True], ids=["random parts", "stage-0 parts"])
def test_tiny_experiments_return_one_row_per_model(pretrained, no_stage0_build):
    cfg = TINY_PRETRAINED if pretrained else TINY
    sweep = run_data_sweep(cfg, [10, 20])
    assert len(sweep) == 2 * 2 * 2
    assert {r["arm"] for r in sweep} == {"two-stage", "stage 2 only"}
    assert all(0 <= r[k] <= 1 for r in sweep for k in ("iid", "heldout", "iid_position", "heldout_color"))
    with pytest.raises(ValueError, match="at most n_captions"):
        run_data_sweep(cfg, [50])
    forgetting = run_forgetting(cfg, [1e-4, 1e-3], n=20)
    assert [r["arm"] for r in forgetting[:4]] == ["before stage 1", "after stage 1", "after stage 2", "after stage 2"]
    assert table(forgetting, "lm_drift", "lr", [1e-4, 1e-3], arm="after stage 2").shape == (2, 2)
    augmentation = run_augmentation(cfg, augmentation_arms(hflip_example), n=10)
    assert len(augmentation) == 2 * 5 and all("heldout_mirror" in r for r in augmentation)


def test_plots_draw_one_axis_per_panel_and_a_bar_per_arm_and_metric():
    import matplotlib.pyplot as plt

    runs = {"a": np.array([[0.5, 0.7], [0.6, 0.8]]), "b": np.array([[0.4, 0.9], [0.5, 1.0]])}
    fig = plot_panels([10, 20], {"one": runs, "two": runs}, "n", "acc", log_x=True, hlines={"one": {"ref": 0.5}})
    assert len(fig.axes) == 2
    fig2 = plot_arms(["x", "y"], runs)
    assert len(fig2.axes[0].patches) == 4
    fig3 = plot_augmentations(torch.rand(3, 8, 8), "top-left", hflip_example, lambda im, s: im)
    assert len(fig3.axes) == 4
    for f in (fig, fig2, fig3):
        plt.close(f)
