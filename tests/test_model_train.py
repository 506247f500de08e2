"""The model's interface, what each stage freezes, and that training is reproducible and works."""

from __future__ import annotations

import pytest
import torch

from tutor_lib.data import make_splits
from tutor_lib.evaluate import evaluate
from tutor_lib.model import ModelConfig, MultimodalModel, Projector, count_parameters, set_stage, trainable_summary
from tutor_lib.train import train_both_stages, train_stage1, train_stage2

TINY = ModelConfig(image_size=32, patch_size=8, vision_dim=32, llm_dim=32)


def tiny_model(seed: int = 0) -> MultimodalModel:
    torch.manual_seed(seed)
    return MultimodalModel(TINY)


@pytest.fixture(scope="module")
def tiny_data():
    return make_splits(n_train=64, n_test=16, n_heldout=16, image_size=32, seed=0)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


def test_default_sizes_and_parameter_counts():
    model = MultimodalModel()
    assert model.num_patches == 64
    assert count_parameters(model.projector) == 12_416  # the seed's stage-1 count
    assert count_parameters(model.vision_encoder) == 32_896  # patch conv 24,704 + 2D position embedding 64 x 128
    set_stage(model, 1)
    summary = trainable_summary(model)
    assert "Trainable: 12,416 / 180,756 parameters (6.9%)" in summary
    assert "language_model          0 /   135,444  frozen" in summary


def test_forward_shape_and_causal_layout():
    model = tiny_model()
    images, ids = torch.rand(2, 3, 32, 32), torch.tensor([[1, 3, 4, 9], [1, 6, 7, 8]])
    logits = model(images, ids)
    assert logits.shape == (2, model.num_patches + 4, TINY.vocab_size)
    # the logit at num_patches + t only sees text tokens 0..t: changing token 3 leaves positions <= N + 2 alone
    changed = ids.clone()
    changed[:, 3] = 15
    other = model(images, changed)
    n = model.num_patches
    assert torch.allclose(logits[:, : n + 3], other[:, : n + 3], atol=1e-6)
    assert not torch.allclose(logits[:, n + 3], other[:, n + 3])
    # and every text position sees the image
    assert not torch.allclose(model(torch.rand(2, 3, 32, 32), ids)[:, n:], logits[:, n:])


def test_projector_is_an_mlp_with_gelu():
    proj = Projector(128, 64)
    x = torch.randn(2, 5, 128)
    expected = proj.fc2(torch.nn.functional.gelu(proj.fc1(x)))
    assert proj(x).shape == (2, 5, 64) and torch.allclose(proj(x), expected)


def test_set_stage_freezes_the_right_boxes():
    model = tiny_model()
    set_stage(model, 1)
    assert all(p.requires_grad for p in model.projector.parameters())
    assert not any(p.requires_grad for p in model.language_model.parameters())
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    set_stage(model, 2)
    assert all(p.requires_grad for p in model.language_model.parameters())
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    for bad in (0, 3, "1", None):
        with pytest.raises(ValueError, match="stage must be 1"):
            set_stage(model, bad)


def test_stage1_changes_only_the_projector(tiny_data):
    model = tiny_model()
    vision, projector, lm = snapshot(model.vision_encoder), snapshot(model.projector), snapshot(model.language_model)
    losses = train_stage1(model, tiny_data.train, num_epochs=2, batch_size=16, progress=False)
    assert len(losses) == 2 and all(isinstance(x, float) for x in losses)
    assert unchanged(model.vision_encoder, vision) and unchanged(model.language_model, lm)
    assert not unchanged(model.projector, projector)


def test_stage2_never_changes_the_vision_encoder(tiny_data):
    model = tiny_model()
    vision, projector, lm = snapshot(model.vision_encoder), snapshot(model.projector), snapshot(model.language_model)
    losses = train_stage2(model, tiny_data.train, num_epochs=3, batch_size=16, progress=False)
    assert len(losses) == 3
    assert unchanged(model.vision_encoder, vision)
    assert not unchanged(model.projector, projector) and not unchanged(model.language_model, lm)
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())


def test_training_is_reproducible_under_a_seed(tiny_data):
    runs = []
    for _ in range(2):
        model = tiny_model(seed=5)
        losses = train_both_stages(model, tiny_data.train, 1, 2, batch_size=16, progress=False, seed=7)
        runs.append((losses, snapshot(model)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())
    other = train_both_stages(tiny_model(seed=5), tiny_data.train, 1, 2, batch_size=16, progress=False, seed=8)
    assert other != runs[0][0]


def test_fit_rejects_bad_settings(tiny_data):
    model = tiny_model()
    with pytest.raises(ValueError, match="batch_size"):
        train_stage1(model, tiny_data.train, num_epochs=1, batch_size=0, progress=False)
    model.requires_grad_(False)
    from tutor_lib.train import caption_tensors, fit

    with pytest.raises(ValueError, match="set_stage"):
        fit(model, *caption_tensors(tiny_data.train), 1, 8, 1e-3, progress=False)


def test_fit_can_stop_after_an_exact_number_of_steps(tiny_data):
    from tutor_lib.train import fit, instruction_tensors

    tensors = instruction_tensors(tiny_data.train)  # 64 samples: 4 steps of 16 per epoch

    def run(**kwargs):
        model = tiny_model(seed=1)
        set_stage(model, 2)
        steps = []
        model.register_forward_pre_hook(lambda module, args: steps.append(len(args[0])))
        return fit(model, *tensors, batch_size=16, lr=1e-3, progress=False, generator=torch.Generator().manual_seed(0),
                   **kwargs), steps

    two_epochs, seen = run(num_epochs=2)
    six_steps, seen_six = run(num_epochs=None, steps=6)
    assert seen == [16] * 8 and seen_six == [16] * 6
    assert len(six_steps) == 2 and six_steps[0] == two_epochs[0]  # the same first epoch, then a partial one
    assert run(num_epochs=1, steps=100)[1] == [16] * 4  # whichever limit comes first
    assert run(num_epochs=None, steps=0) == ([], [])
    model = tiny_model()
    set_stage(model, 2)
    with pytest.raises(ValueError, match="num_epochs or steps"):
        fit(model, *tensors, None, 16, 1e-3, progress=False)
    with pytest.raises(ValueError, match="steps >= 0"):
        fit(model, *tensors, None, 16, 1e-3, steps=-1, progress=False)


def test_recipe_is_stated_once():
    from dataclasses import fields

    from tutor_lib.pipeline import RunConfig
    from tutor_lib.train import RECIPE, Recipe

    run = RunConfig()
    assert all(getattr(run, f.name) == getattr(RECIPE, f.name) for f in fields(Recipe))
    quick = run.quick()
    assert isinstance(quick, RunConfig) and quick.seed == run.seed
    assert (quick.n_train, quick.stage1_epochs, quick.stage2_epochs) == (96, 2, 3)
    assert quick.stage1_lr == RECIPE.stage1_lr


def test_loss_is_the_masked_mean_over_answer_positions(tiny_data):
    """With lr=0 and one full batch, the reported loss equals the masked loss of the untouched model."""
    from tutor_lib.losses import masked_mean_nll
    from tutor_lib.train import instruction_tensors

    model = tiny_model()
    images, ids, labels = instruction_tensors(tiny_data.train)
    with torch.no_grad():
        expected = masked_mean_nll(model(images, ids)[:, model.num_patches:], labels).item()
    losses = train_stage2(model, tiny_data.train, num_epochs=1, batch_size=len(tiny_data.train), lr=0.0, progress=False)
    assert losses[0] == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_a_short_run_learns_the_task():
    """A small configuration (32 px images, 200 samples, 2 + 40 epochs of batch 16) answers most questions."""
    splits = make_splits(n_train=200, n_test=60, n_heldout=60, image_size=32, seed=2)
    torch.manual_seed(2)
    model = MultimodalModel(ModelConfig(image_size=32, patch_size=8))
    train_both_stages(model, splits.train, 2, 40, batch_size=16, progress=False, seed=2)
    accuracy = evaluate(model, splits.test_iid)
    assert accuracy["overall"] >= 0.9, accuracy
