"""The checks of 03_model reject the mistakes students make and accept every correct variant."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from check_assertions import assert_accepts, assert_rejects

import tutor_lib.checks as checks
import tutor_lib.model
from tutor_lib.checks import CheckError, check_Projector, check_set_stage

# -- Projector: correct variants --------------------------------------------------------------------


class ProjectorModules(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, llm_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ProjectorSequential(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim))

    def forward(self, features):
        return self.net(features)


def ProjectorFactory(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(approximate="tanh"), nn.Linear(llm_dim, llm_dim))


class ProjectorFunctional(nn.Module):
    """Declares the second layer first and calls the weights through F.linear: order is not by declaration."""

    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.out = nn.Linear(llm_dim, llm_dim)
        self.inp = nn.Linear(vision_dim, llm_dim)

    def forward(self, x):
        h = F.gelu(F.linear(x, self.inp.weight, self.inp.bias))
        return F.linear(h, self.out.weight, self.out.bias)


class ProjectorKeywordCalls(ProjectorModules):
    """Calls its layers with keyword arguments (forward hooks then see no positional input)."""

    def forward(self, x):
        return self.fc2(input=self.act(input=self.fc1(input=x)))


# -- Projector: typical mistakes -------------------------------------------------------------------


class ProjectorNoActivation(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def forward(self, x):
        return self.fc2(self.fc1(x))


def ProjectorReLU(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.ReLU(), nn.Linear(llm_dim, llm_dim))


def ProjectorWideHidden(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, vision_dim), nn.GELU(), nn.Linear(vision_dim, llm_dim))


def ProjectorSingleLinear(vision_dim, llm_dim):
    return nn.Linear(vision_dim, llm_dim)


def ProjectorGeluAtEnd(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim), nn.GELU())


def ProjectorSwappedDims(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(llm_dim, vision_dim), nn.GELU(), nn.Linear(vision_dim, llm_dim))


def ProjectorLayerNorm(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim), nn.LayerNorm(llm_dim))


def ProjectorNoBias(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim, bias=False), nn.GELU(), nn.Linear(llm_dim, llm_dim, bias=False))


class ProjectorNoGrad(ProjectorModules):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


class ProjectorNotAModule:
    def __init__(self, vision_dim, llm_dim):
        self.fc1, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def __call__(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class ProjectorForgotSuper(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        self.fc1 = nn.Linear(vision_dim, llm_dim)


@pytest.mark.parametrize("fn", [ProjectorModules, ProjectorSequential, ProjectorFactory, ProjectorFunctional,
                                ProjectorKeywordCalls, tutor_lib.model.Projector])
def test_projector_accepts_correct_variants(fn, capsys):
    assert_accepts(check_Projector, fn, capsys, "Projector", "12,416")


@pytest.mark.parametrize("fn, fragments", [
    (ProjectorNoActivation, ["Linear -> GELU -> Linear", "nothing between the two layers"]),
    (ProjectorReLU, ["that is ReLU"]),
    (ProjectorWideHidden, ["Linear(128, 64) then Linear(64, 64)", "Linear(128, 128) then Linear(128, 64)", "hidden width"]),
    (ProjectorSingleLinear, ["one Linear layer", "LLaVA-1.5"]),
    (ProjectorGeluAtEnd, ["no activation after the last layer"]),
    (ProjectorSwappedDims, ["applied to features", "no exception", "RuntimeError"]),
    (ProjectorLayerNorm, ["number of parameters", "12,416", "12,544", "no extra layers"]),
    (ProjectorNoBias, ["number of parameters", "12,288", "keep the biases"]),
    (ProjectorNoGrad, ["gradients reach every parameter", "torch.no_grad()"]),
    (ProjectorNotAModule, ["an nn.Module", "ProjectorNotAModule"]),
    (ProjectorForgotSuper, ["no exception", "super().__init__()"]),
])
def test_projector_rejects_mistakes(fn, fragments, capsys):
    assert_rejects(check_Projector, fn, *fragments, capsys=capsys)


# -- set_stage: correct variants -------------------------------------------------------------------

def stage_modules(model, stage):
    if stage not in (1, 2):
        raise ValueError(f"unknown stage {stage}")
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 2)


def stage_by_name(model, stage):
    if stage != 1 and stage != 2:
        raise ValueError("stage must be 1 or 2")
    trainable_prefixes = ("projector.",) if stage == 1 else ("projector.", "language_model.")
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(trainable_prefixes)
    print(f"stage {stage}: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable")


def stage_table(model, stage):
    plan = {1: {"vision_encoder": False, "projector": True, "language_model": False},
            2: {"vision_encoder": False, "projector": True, "language_model": True}}
    if stage not in plan:
        raise ValueError(stage)
    for part, trainable in plan[stage].items():
        for p in getattr(model, part).parameters():
            p.requires_grad_(trainable)


# -- set_stage: typical mistakes -------------------------------------------------------------------

def stage_lm_trainable_in_stage1(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    if stage == 2:
        model.language_model.requires_grad_(True)


def stage_no_value_error(model, stage):
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage != 1)


def stage_everything_in_stage2(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    if stage == 1:
        model.requires_grad_(False)
        model.projector.requires_grad_(True)
    else:
        model.requires_grad_(True)


def stage2_only_unfreezes_lm(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    if stage == 1:
        model.vision_encoder.requires_grad_(False)
        model.projector.requires_grad_(True)
        model.language_model.requires_grad_(False)
    else:
        model.language_model.requires_grad_(True)


def stage_relies_on_constructor(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 2)


def stage_forgets_lm_parts(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    for part in (model.language_model.token_embedding, model.language_model.blocks):  # forgets head, norm, positions
        part.requires_grad_(stage == 2)


def stage_eval_instead_of_freeze(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.eval()
    model.language_model.train(stage == 2)


def stage_range_check(model, stage):
    if stage < 1 or stage > 2:
        raise ValueError(stage)
    stage_modules(model, round(stage))


def stage_type_error(model, stage):
    {1: None, 2: None}[stage]  # KeyError for other stages
    stage_modules(model, stage)


def stage_raises_too_late(model, stage):
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 2)
    if stage not in (1, 2):
        raise ValueError(f"no stage {stage}")


def stage_reinitialises(model, stage):
    stage_modules(model, stage)
    model.projector.fc1.reset_parameters()


@pytest.mark.parametrize("fn", [stage_modules, stage_by_name, stage_table, tutor_lib.model.set_stage])
def test_set_stage_accepts_correct_variants(fn, capsys):
    assert_accepts(check_set_stage, fn, capsys, "set_stage", "12,416 of 180,756")


@pytest.mark.parametrize("fn, fragments", [
    (stage_lm_trainable_in_stage1, ["set_stage(model, 1) on a new model: model.language_model", "only the projector trains"]),
    (stage_no_value_error, ["set_stage(model, 0)", "ValueError", "no exception"]),
    (stage_everything_in_stage2, ["set_stage(model, 2) after stage 1: model.vision_encoder", "not even in stage 2"]),
    (stage2_only_unfreezes_lm, ["every parameter frozen: model.projector", "trains the projector as well"]),
    (stage_relies_on_constructor, ["every parameter trainable: model.vision_encoder", "whatever state"]),
    (stage_forgets_lm_parts, ["model.language_model", "some parts were missed", "output_head", "switch the whole submodule"]),
    (stage_eval_instead_of_freeze, ["on a new model: model.language_model", "not frozen"]),
    (stage_range_check, ["set_stage(model, 1.5)", "no exception"]),
    (stage_type_error, ["set_stage(model, 0)", "KeyError"]),
    (stage_reinitialises, ["weights", "projector.fc1.weight changed"]),
    (stage_raises_too_late, ["set_stage(model, 0)", "only after switching", "raise before touching the model"]),
])
def test_set_stage_rejects_mistakes(fn, fragments, capsys):
    assert_rejects(check_set_stage, fn, *fragments, capsys=capsys)


# -- guards -----------------------------------------------------------------------------------------

class ProjectorSubclass(tutor_lib.model.Projector):
    pass


def stage_wraps_reference(model, stage):
    tutor_lib.model.set_stage(model, stage)


@pytest.mark.parametrize("name, fn, forbidden, fragment", [
    ("Projector", tutor_lib.model.Projector, [tutor_lib.model.Projector], "tutor_lib's own"),
    ("Projector", ProjectorSubclass, [tutor_lib.model.Projector], "subclasses a tutor_lib class"),
    ("set_stage", tutor_lib.model.set_stage, [tutor_lib.model.set_stage], "tutor_lib's own"),
    ("set_stage", stage_wraps_reference, [tutor_lib.model.set_stage], "it calls 'set_stage'"),
])
def test_hidden_guard_rejects_the_reference(name, fn, forbidden, fragment):
    with pytest.raises(CheckError, match=fragment):
        checks.not_reference(name, fn, forbidden)


def test_hidden_guard_accepts_own_code():
    checks.not_reference("Projector", ProjectorModules, [tutor_lib.model.Projector])
    checks.not_reference("set_stage", stage_table, [tutor_lib.model.set_stage])


def test_checks_leave_the_global_rng_alone():
    torch.manual_seed(1)
    state = torch.get_rng_state()
    check_Projector(ProjectorModules)
    check_set_stage(stage_modules)
    assert torch.equal(torch.get_rng_state(), state)
