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
from tutor_lib.checks._recipe_mistakes import LM_TRAINABLE_IN_STAGE1
from tutor_lib.checks.effects import effect_line
from tutor_lib.checks.nb03_model import PROJECTOR_MISTAKES, SET_STAGE_MISTAKES

PROJECTOR = {m.fn.__name__: m.name for m in PROJECTOR_MISTAKES}  # catalogue function -> mistake name
STAGE = {m.fn.__name__: m.name for m in SET_STAGE_MISTAKES}

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


class ProjectorPlainReLU:
    def __init__(self, vision_dim, llm_dim):
        self.fc1, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def __call__(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class ProjectorForgotSuper(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        self.fc1 = nn.Linear(vision_dim, llm_dim)


class ProjectorSiLU(ProjectorModules):
    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


class ProjectorTwiceWide(nn.Module):
    """Reads mlp2x_gelu as a hidden layer twice as wide."""

    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.up, self.down = nn.Linear(vision_dim, 2 * llm_dim), nn.Linear(2 * llm_dim, llm_dim)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class ProjectorFunctionalReLU(ProjectorFunctional):
    """ReLU through F.linear, the layers declared in reverse: matched with its own weights, in the order they run."""

    def forward(self, x):
        return F.linear(F.relu(F.linear(x, self.inp.weight, self.inp.bias)), self.out.weight, self.out.bias)


def ProjectorThreeLayers(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim), nn.GELU(),
                         nn.Linear(llm_dim, llm_dim))


# -- Projector: mistakes that are in no catalogue (their message must name none) ---------------------

def ProjectorTanh(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.Tanh(), nn.Linear(llm_dim, llm_dim))


def ProjectorLinearThenGelu(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU())


def ProjectorGeluFirst(vision_dim, llm_dim):
    return nn.Sequential(nn.GELU(), nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim))


class ProjectorScaled(ProjectorModules):
    def forward(self, x):
        return 2 * super().forward(x)


class ProjectorDetachedFirstLayer(ProjectorModules):
    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x).detach()))


def ProjectorLinearAfterLinear(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim), nn.Linear(llm_dim, llm_dim))


@pytest.mark.parametrize("fn", [ProjectorModules, ProjectorSequential, ProjectorFactory, ProjectorFunctional,
                                ProjectorKeywordCalls, tutor_lib.model.Projector])
def test_projector_accepts_correct_variants(fn, capsys):
    assert_accepts(check_Projector, fn, capsys, "Projector", "12,416")


class ProjectorPlainList(nn.Module):
    """Both layers kept in a plain Python list: nn.Module does not register them."""

    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.layers = [nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)]

    def forward(self, x):
        return self.layers[1](F.gelu(self.layers[0](x)))


@pytest.mark.parametrize("fn, fragments, names", [
    (ProjectorNoActivation, ["Linear -> GELU -> Linear", "put a GELU between them"], PROJECTOR["projector_no_activation"]),
    (ProjectorReLU, ["of your own layers' weights", "uses GELU"], PROJECTOR["projector_relu"]),
    (ProjectorWideHidden, ["Linear(16, 24) then Linear(24, 24)", "Linear(16, 16) then Linear(16, 24)", "hidden width"],
     PROJECTOR["projector_hidden_vision_dim"]),
    (ProjectorSingleLinear, ["one Linear layer", "LLaVA-1.5"], PROJECTOR["projector_single_linear"]),
    (ProjectorGeluAtEnd, ["ends with the second Linear"], PROJECTOR["projector_gelu_at_end"]),
    (ProjectorSwappedDims, ["applied to features", "no exception", "RuntimeError"], PROJECTOR["projector_dims_swapped"]),
    (ProjectorLayerNorm, ["number of parameters", "1,008", "1,056", "no extra layers"], PROJECTOR["projector_layer_norm"]),
    (ProjectorNoBias, ["number of parameters", "960", "0 of the 2 Linear layers have a bias", "keep the biases"],
     PROJECTOR["projector_no_bias"]),
    (ProjectorNoGrad, ["gradients reach every parameter", "torch.no_grad()"], PROJECTOR["ProjectorNoGrad"]),
    (ProjectorNotAModule, ["an nn.Module", "ProjectorNotAModule"], PROJECTOR["ProjectorPlainClass"]),
    (ProjectorForgotSuper, ["no exception", "super().__init__()"], PROJECTOR["ProjectorWithoutSuper"]),
    (ProjectorSiLU, ["of your own layers' weights", "uses GELU"], PROJECTOR["projector_silu"]),
    (ProjectorTwiceWide, ["Linear(16, 48) then Linear(48, 24)", "not twice the width"],
     PROJECTOR["projector_hidden_twice_llm_dim"]),
    (ProjectorFunctionalReLU, ["of your own layers' weights", "uses GELU"], PROJECTOR["projector_relu"]),
    (ProjectorThreeLayers, ["exactly two Linear layers", "3 Linear layers"], PROJECTOR["projector_two_hidden_layers"]),
    # in no catalogue: the message says what is expected and where to look, and names no mistake
    (ProjectorTanh, ["of your own layers' weights", "look at forward"], None),
    (ProjectorLinearThenGelu, ["one Linear layer"], None),
    (ProjectorGeluFirst, ["of your own layers' weights"], None),
    (ProjectorScaled, ["of your own layers' weights"], None),
    (ProjectorDetachedFirstLayer, ["gradients reach every parameter", "none on ['fc1.weight', 'fc1.bias']"], None),
    (ProjectorLinearAfterLinear, ["exactly two Linear layers", "3 Linear layers"], None),
    (ProjectorPlainReLU, ["an nn.Module", "ProjectorPlainReLU"], None),  # not a module, and not the projector either
    (ProjectorPlainList, ["finds no nn.Linear", "plain list or dict are not registered"], None),
])
def test_projector_rejects_mistakes(fn, fragments, names, capsys):
    assert_rejects(check_Projector, fn, *fragments, names=names, capsys=capsys)


def test_projector_catalogue_tells_hidden_widths_apart():
    """In the first case, Projector(16, 24), a hidden width of vision_dim and one of 2 * llm_dim differ."""
    message = assert_rejects(check_Projector, ProjectorWideHidden, names=PROJECTOR["projector_hidden_vision_dim"])
    assert PROJECTOR["projector_hidden_twice_llm_dim"] not in message


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


def stage_stages_swapped(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 1)  # the stages the wrong way round: the LM trains in stage 1


def stage_lm_always_frozen(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("projector.")


def stage_projector_only_stage1(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.requires_grad_(False)
    for p in model.projector.parameters():
        p.requires_grad = stage == 1
    for p in model.language_model.parameters():
        p.requires_grad = stage == 2


def stage_flips_lm(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    for p in model.language_model.parameters():
        p.requires_grad = not p.requires_grad


def stage_blocks_only(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    for block in model.language_model.blocks:  # the transformer blocks only: embeddings, norm and head untouched
        block.requires_grad_(stage == 2)


def stage_new_projector(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.projector = tutor_lib.model.Projector(model.config.vision_dim, model.config.llm_dim)
    stage_modules(model, stage)


def stage_vision_eval_only(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.eval()  # eval() freezes nothing: a vision encoder that was trainable stays trainable
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 2)


# -- set_stage: mistakes that are in no catalogue (their message must name none) --------------------

def stage_resets_second_projector_layer(model, stage):
    stage_modules(model, stage)
    model.projector.fc2.reset_parameters()


def stage_type_error_raised(model, stage):
    if stage not in (1, 2):
        raise TypeError(f"stage must be 1 or 2, got {stage!r}")
    stage_modules(model, stage)


def stage_lm_weights_only(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    for name, p in model.language_model.named_parameters():
        p.requires_grad = stage == 2 or not name.endswith("weight")  # biases left trainable in stage 1


def stage2_unfreezes_blocks_only(model, stage):
    if stage not in (1, 2):
        raise ValueError(stage)
    stage_modules(model, 1)  # everything right for stage 1 ...
    for block in model.language_model.blocks:  # ... and stage 2 adds the blocks alone
        block.requires_grad_(stage == 2)


def stage_unfreezes_vision_of_a_frozen_model(model, stage):
    was_frozen = not any(p.requires_grad for p in model.parameters())
    stage_modules(model, stage)
    if was_frozen:  # right from every other starting state
        model.vision_encoder.requires_grad_(True)


@pytest.mark.parametrize("fn", [stage_modules, stage_by_name, stage_table, tutor_lib.model.set_stage])
def test_set_stage_accepts_correct_variants(fn, capsys):
    assert_accepts(check_set_stage, fn, capsys, "set_stage", "12,416 of 180,756")


@pytest.mark.parametrize("fn, fragments, names", [
    (stage_lm_trainable_in_stage1, ["set_stage(model, 1) on a new model: model.language_model",
                                    "stage 1 trains only the projector"], LM_TRAINABLE_IN_STAGE1.name),
    (stage_no_value_error, ["set_stage(model, 0)", "ValueError", "no exception"], STAGE["set_stage_no_value_error"]),
    (stage_everything_in_stage2, ["set_stage(model, 2) after stage 1: model.vision_encoder", "never trains"],
     STAGE["set_stage_vision_trained_in_stage2"]),
    (stage2_only_unfreezes_lm, ["every parameter frozen: model.projector", "trains the projector"],
     STAGE["set_stage_stage2_only_lm"]),
    (stage_relies_on_constructor, ["every parameter trainable: model.vision_encoder", "whatever state"],
     STAGE["set_stage_vision_never_frozen"]),
    (stage_forgets_lm_parts, ["model.language_model", "not frozen: position_embedding, norm, output_head; the rest are",
                              "not a list of its parts"], STAGE["set_stage_lm_embedding_and_blocks_only"]),
    (stage_eval_instead_of_freeze, ["on a new model: model.language_model", "not frozen"],
     (STAGE["set_stage_train_eval"], LM_TRAINABLE_IN_STAGE1.name)),  # both are true of it
    (stage_range_check, ["set_stage(model, 1.5)", "no exception"], STAGE["set_stage_range_check"]),
    (stage_type_error, ["set_stage(model, 0)", "KeyError"], STAGE["set_stage_key_error"]),
    (stage_reinitialises, ["weights", "projector.fc1.weight changed"], STAGE["set_stage_first_projector_layer_reset"]),
    (stage_raises_too_late, ["set_stage(model, 0)", "only after switching", "raise before touching the model"],
     STAGE["set_stage_raises_late"]),
    (stage_stages_swapped, ["set_stage(model, 1) on a new model: model.language_model"], LM_TRAINABLE_IN_STAGE1.name),
    (stage_lm_always_frozen, ["set_stage(model, 2) after stage 1: model.language_model", "not trainable"],
     STAGE["set_stage_lm_frozen_in_stage2"]),
    (stage_projector_only_stage1, ["set_stage(model, 2) after stage 1: model.projector"],
     STAGE["set_stage_projector_frozen_in_stage2"]),
    (stage_flips_lm, ["set_stage(model, 1) on a model with every parameter frozen: model.language_model"],
     STAGE["set_stage_lm_flags_flipped"]),
    (stage_blocks_only, ["set_stage(model, 1) on a new model: model.language_model", "the rest are"],
     STAGE["set_stage_lm_blocks_only"]),
    (stage_new_projector, ["weights", "projector.fc1.weight changed (4 tensors changed)"],
     STAGE["set_stage_projector_reset"]),
    (stage_vision_eval_only, ["every parameter trainable: model.vision_encoder", "whatever state"],
     STAGE["set_stage_vision_never_frozen"]),  # eval() on the vision encoder, flags as if never frozen
    # in no catalogue: the message says what is expected and where to look, and names no mistake
    (stage_type_error_raised, ["set_stage(model, 0)", "TypeError"], None),
    (stage_resets_second_projector_layer, ["weights", "projector.fc2.weight changed"], None),
    (stage_lm_weights_only, ["on a new model: model.language_model", "the rest are"], None),
    (stage2_unfreezes_blocks_only, ["set_stage(model, 2) after stage 1: model.language_model", "the rest are"], None),
    (stage_unfreezes_vision_of_a_frozen_model, ["every parameter frozen: model.vision_encoder"], None),
])
def test_set_stage_rejects_mistakes(fn, fragments, names, capsys):
    assert_rejects(check_set_stage, fn, *fragments, names=names, capsys=capsys)


def test_set_stage_names_the_recipe_mistake_and_its_effect():
    """A set_stage that leaves the language model trainable in stage 1 is told so, with what that did to a model."""
    message = assert_rejects(check_set_stage, stage_lm_trainable_in_stage1, names=LM_TRAINABLE_IN_STAGE1.name)
    assert LM_TRAINABLE_IN_STAGE1.hint in message
    effect = effect_line(LM_TRAINABLE_IN_STAGE1.effect)  # "" until effects.json holds the measurement
    assert (f"effect:   {effect}" in message) if effect else "effect:" not in message


def test_set_stage_catalogue_needs_the_earlier_cases_passed():
    """The projector frozen in both stages leaves, in the failing case, the flags that 'stage 2 switches only the
    language model' leaves; it fails the first case, which that student's set_stage passed, so it is not named."""
    message = assert_rejects(check_set_stage, stage2_only_unfreezes_lm, names=STAGE["set_stage_stage2_only_lm"])
    assert STAGE["set_stage_projector_frozen"] not in message


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
