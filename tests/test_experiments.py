"""tutor_lib.experiments, stats and experiment_plots: step-exact training, paired seeds, intervals, tiny end-to-end runs."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

import tutor_lib.experiments as experiments
import tutor_lib.pretrain as pretrain
from tutor_lib.augment import HFLIP_POSITION, hflip_dataset, hflip_example
from tutor_lib.data import HELD_OUT_CONFIGS, make_dataset
from tutor_lib.experiment_plots import plot_arms, plot_augmentations, plot_differences, plot_panels
from tutor_lib.experiments import (
    _ALIGNED,
    FLIP_REACHABLE,
    SKIP_ARMS,
    ExperimentConfig,
    ForgettingArm,
    _pad_cat,
    _WithText,
    aligned_model,
    augment_with_example,
    augmentation_arms,
    caption_scores,
    column,
    coverage,
    cpu_threads,
    heldout_text,
    interval_table,
    mirrored,
    new_model,
    qa_scores,
    run_augmentation,
    run_forgetting,
    run_skip_stage1,
    splits_for,
    table,
    train_steps,
    triple_name,
)
from tutor_lib.model import set_stage
from tutor_lib.pretrain import lm_pretraining_loss, make_text_corpus, text_loss
from tutor_lib.stats import describe, mean_interval, paired_bootstrap, verdict
from tutor_lib.train import RECIPE, instruction_tensors
from tutor_lib.vocab import IGNORE_INDEX, PAD

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core CPU: one thread is much faster (see ExperimentConfig.num_threads)."""
    with cpu_threads(1):
        yield


@pytest.fixture(autouse=True)
def no_stage0_build(monkeypatch, tmp_path):
    """Fail a test that would pretrain stage 0 instead of loading the shipped 32x32 weights (and keep ~/.cache clean)."""
    monkeypatch.setenv("TUTOR_CACHE", str(tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("stage 0 was built, not loaded from the shipped weights")

    monkeypatch.setattr(pretrain, "build_stage0", refuse)


# 32-pixel images: their seed-42 stage-0 weights ship with tutor_lib (loaded, never built).
TINY = ExperimentConfig(n_captions=40, n_test=12, n_heldout=12, stage1_steps=2, stage2_steps=3, seeds=(0, 1),
                        device="cpu")


def test_the_config_holds_only_experiment_settings_and_the_recipe_gives_the_rest():
    fields = set(ExperimentConfig.__dataclass_fields__)
    assert not fields & {"stage1_lr", "stage2_lr", "batch_size", "pretrained"}
    assert len(ExperimentConfig().seeds) >= 6 and ExperimentConfig().stage0_seed == 42
    assert ForgettingArm().lr == RECIPE.stage2_lr


def test_train_steps_takes_exactly_the_requested_steps_and_is_seeded(monkeypatch):
    data = make_dataset(10, image_size=32, seed=0)  # fewer samples than a batch: every step is a new pass
    calls = []
    original = experiments.fit

    def counting_fit(model, images, *args, **kwargs):
        calls.append(kwargs["steps"])
        return original(model, images, *args, **kwargs)

    monkeypatch.setattr(experiments, "fit", counting_fit)
    runs = []
    for _ in range(2):
        model = new_model(TINY, 0)
        set_stage(model, 2)
        runs.append((train_steps(model, instruction_tensors(data), steps=5, lr=1e-3, seed=3), model))
    (losses, a), (again, b) = runs
    assert calls == [5, 5] and len(losses) == 5 and losses == again  # 10 samples, batch 32: one step per epoch
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_new_model_is_paired_by_seed_shares_the_stage0_parts_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = new_model(TINY, 5), new_model(TINY, 5), new_model(TINY, 6)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.projector.fc1.weight, c.projector.fc1.weight)
    for part in ("vision_encoder", "language_model"):  # every run seed starts from the one seed-42 checkpoint
        assert all(torch.equal(p, q) for p, q in zip(getattr(a, part).parameters(), getattr(c, part).parameters()))


def test_aligned_model_trains_stage1_once_per_config_and_seed_and_only_the_projector():
    _ALIGNED.clear()
    first = aligned_model(TINY, 0)
    assert len(_ALIGNED) == 1
    second = aligned_model(TINY, 0)
    assert len(_ALIGNED) == 1 and first is not second
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    fresh = new_model(TINY, 0)
    for (name, p), q in zip(first.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q) != name.startswith("projector"), name


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
    assert experiments.HFLIP_POSITION is HFLIP_POSITION  # one label table, in augment.py


def test_qa_scores_per_type_per_triple_and_flip_groups():
    model = aligned_model(TINY, 0)
    splits = splits_for(TINY, 0)
    scores = qa_scores(model, splits)
    triples = [f"heldout@{triple_name(c)}" for c in HELD_OUT_CONFIGS]
    assert {"iid", "iid_color", "iid_shape", "iid_position", "heldout", "heldout_position", "heldout_mirror",
            "heldout_center", *triples} <= set(scores)
    present = [k for k in triples if not np.isnan(scores[k])]
    assert present and all(0 <= scores[k] <= 1 for k in present)
    counts = np.array([sum(t == c for t in zip(splits.test_heldout.colors.tolist(), splits.test_heldout.shapes.tolist(),
                                              splits.test_heldout.positions.tolist())) for c in HELD_OUT_CONFIGS])
    per_triple = np.array([0.0 if np.isnan(scores[k]) else scores[k] for k in triples])
    assert scores["heldout"] == pytest.approx((per_triple * counts).sum() / counts.sum())  # every question counted once


def test_caption_scores_and_coverage():
    model = new_model(TINY, 0)
    data = make_dataset(8, image_size=32)
    scores = caption_scores(model, data)
    assert set(scores) == {"caption_loss", "caption_acc"} and np.isfinite(scores["caption_loss"])
    assert coverage(data) <= 8 and coverage(data.subset([0, 0, 0])) == 1


def test_pad_cat_pads_ids_with_pad_and_labels_with_ignore_index():
    ids, labels = _pad_cat([(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)),
                            (torch.ones(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.long))])
    assert ids.shape == labels.shape == (3, 5)
    assert (ids[:2, 3:] == PAD).all() and (labels[:2, 3:] == IGNORE_INDEX).all() and (labels[2] == 1).all()


def test_with_text_reads_images_and_scenes_in_words_as_the_parts_would():
    model = new_model(TINY, 0)
    data = make_dataset(3, image_size=32, seed=1)
    text = make_text_corpus(2, image_size=32, seed=5)
    images, ids, labels = instruction_tensors(data)
    wrapped = _WithText(model, images, text.scenes)
    assert wrapped.num_patches == model.num_patches
    with torch.no_grad():
        assert torch.allclose(wrapped(torch.arange(3), ids), model(images, ids))
        logits = wrapped(torch.tensor([3, 4]), text.input_ids)
        from tutor_lib.losses import masked_mean_nll
        via_wrapper = masked_mean_nll(logits[:, model.num_patches:], text.labels)
        direct = lm_pretraining_loss(model.language_model, text.scenes, text.input_ids, text.labels)
    assert via_wrapper.item() == pytest.approx(direct.item(), abs=1e-6)
    with pytest.raises(ValueError, match="word slots"):
        _WithText(model, images, text.scenes[:, :3])


def test_skip_stage1_arms_get_equal_total_steps(monkeypatch):
    steps = {}
    original = experiments.train_steps

    def recording(model, tensors, n_steps, lr, seed):
        steps.setdefault(id(model), []).append((n_steps, lr))
        return original(model, tensors, n_steps, lr, seed)

    monkeypatch.setattr(experiments, "train_steps", recording)
    _ALIGNED.clear()
    cfg = TINY.__class__(**{**TINY.__dict__, "seeds": (0,)})
    rows = run_skip_stage1(cfg, [10])
    assert [r["arm"] for r in rows] == list(SKIP_ARMS)
    totals = sorted(sum(s for s, _ in v) for v in steps.values())
    # the aligned model's stage 1 (2 steps) is shared; then 3 models of 5 steps each, counting that shared stage 1
    assert totals == [2, 3, 5, 5]
    assert {lr for v in steps.values() for _, lr in v} == {RECIPE.stage1_lr, RECIPE.stage2_lr}
    with pytest.raises(ValueError, match="at most n_captions"):
        run_skip_stage1(TINY, [50])


def test_forgetting_stops_at_the_target_and_frozen_lm_keeps_the_text_loss():
    _ALIGNED.clear()
    arms = {"recipe": ForgettingArm(), "text replay": ForgettingArm(replay="text"),
            "caption replay": ForgettingArm(replay="captions"), "frozen LM": ForgettingArm(frozen_lm=True)}
    rows = run_forgetting(TINY, arms, n=10, target=1.01, check_every=2, max_steps=4)  # unreachable: runs 4 steps
    assert [r["arm"] for r in rows[:5]] == ["after stage 1", *arms]
    assert all(r["steps"] == 4 for r in rows if r["arm"] != "after stage 1")
    before = column(rows, "text_loss", arm="after stage 1")
    assert np.array_equal(column(rows, "text_loss", arm="frozen LM"), before)
    assert not np.array_equal(column(rows, "text_loss", arm="recipe"), before)
    model = aligned_model(TINY, 0)
    assert rows[0]["text_loss"] == pytest.approx(text_loss(model.language_model, heldout_text(TINY)))
    quick = run_forgetting(TINY, {"recipe": ForgettingArm()}, n=10, target=0.0)  # reached before any step
    assert all(r["steps"] == 0 for r in quick)
    with pytest.raises(ValueError, match="replay"):
        run_forgetting(TINY, {"bad": ForgettingArm(replay="audio")}, n=10, target=1.01, check_every=1, max_steps=1)
    with pytest.raises(ValueError, match="at most n_captions // 2"):
        run_forgetting(TINY, arms, n=30)


def test_augmentation_arms_and_run():
    data = make_dataset(30, image_size=32, seed=2)
    flipped = augment_with_example(data, hflip_example)
    reference = hflip_dataset(data)
    assert torch.equal(flipped.images, reference.images) and torch.equal(flipped.positions, reference.positions)
    arms = augmentation_arms(hflip_example)
    assert {name: len(build(data)) for name, build in arms.items()} == {"none": 30, "flip, swap": 60, "flip, no swap": 60}
    rows = run_augmentation(TINY, arms, n=10)
    assert len(rows) == 2 * 3 and all("heldout_mirror" in r for r in rows)


def test_table_column_and_interval_table():
    rows = [{"seed": s, "n": n, "arm": a, "acc": s / 10 + n / 1000} for s in (0, 1) for n in (10, 20) for a in "ab"]
    values = table(rows, "acc", "n", [10, 20], arm="a")
    assert values.shape == (2, 2) and values[1, 1] == pytest.approx(0.12)
    with pytest.raises(KeyError, match="no 'acc'"):
        table(rows, "acc", "n", [10, 30], arm="a")
    assert column(rows, "acc", n=10, arm="b").tolist() == pytest.approx([0.01, 0.11])
    with pytest.raises(KeyError, match="several rows per seed"):
        column(rows, "acc", arm="a")
    with pytest.raises(KeyError, match="no row"):
        column(rows, "acc", arm="c")
    text = interval_table(rows, "arm", ["a", "b"], [("A", "acc"), ("raw", "acc")], percent=[True, False], n=10)
    lines = text.splitlines()
    assert lines[0].split() == ["arm", "A", "raw"] and len(lines) == 3 and "6.0%" in lines[1]


def test_paired_bootstrap_is_seeded_paired_and_checks_its_input():
    a, b = [0.7, 0.9, 0.6, 0.99, 0.8], [0.65, 0.86, 0.57, 0.97, 0.74]
    first = paired_bootstrap(a, b, 1000, 3)
    assert first == paired_bootstrap(np.array(a), np.array(b), 1000, 3)
    mean, low, high = first
    assert mean == pytest.approx(np.mean(np.subtract(a, b))) and low <= mean <= high
    assert 0 < low and high < 0.07  # paired: the seeds' wide spread cancels
    assert paired_bootstrap([1.0, 1.0], [0.5, 0.5], 10, 0) == (0.5, 0.5, 0.5)
    for bad_a, bad_b, match in (([1.0, 2.0], [1.0], "paired"), ([1.0], [1.0], "at least 2"),
                                ([[1.0, 2.0]], [[1.0, 2.0]], "one-dimensional"), ([1.0, np.nan], [0.0, 0.0], "NaN")):
        with pytest.raises(ValueError, match=match):
            paired_bootstrap(bad_a, bad_b)
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(a, b, 0)
    assert mean_interval([0.5, 0.7])[0] == pytest.approx(0.6)


def test_describe_and_verdict():
    a, b = [0.8, 0.9, 0.85, 0.95], [0.7, 0.8, 0.78, 0.9]
    assert describe(a).startswith("87.5% [") and describe(a, b).startswith("+8.0 points [+")
    assert describe([1.0, 2.0], percent=False, digits=2).startswith("1.50 [")
    assert verdict(a, b) == "higher" and verdict(b, a) == "lower"
    assert verdict([0.5, 0.6, 0.4], [0.55, 0.5, 0.45]) == "not settled"


def test_plots_draw_one_axis_per_panel_a_bar_per_arm_and_a_row_per_comparison():
    import matplotlib.pyplot as plt

    runs = {"a": np.array([[0.5, 0.7], [0.6, 0.8]]), "b": np.array([[0.4, 0.9], [0.5, 1.0]])}
    fig = plot_panels([10, 20], {"one": runs, "two": runs}, "n", "acc", log_x=True, hlines={"one": {"ref": 0.5}})
    assert len(fig.axes) == 2
    fig2 = plot_arms(["x", "y"], runs)
    assert len(fig2.axes[0].patches) == 4
    fig3 = plot_augmentations(torch.rand(3, 8, 8), "top-left", hflip_example, lambda im, s: im)
    assert len(fig3.axes) == 4
    fig4 = plot_differences({"a - b": (runs["a"][:, 0], runs["b"][:, 0]), "b - a": (runs["b"][:, 1], runs["a"][:, 1])})
    assert [t.get_text() for t in fig4.axes[0].get_yticklabels()] == ["b - a", "a - b"]
    for f in (fig, fig2, fig3, fig4):
        plt.close(f)
