"""Checks for notebook 03_model: Projector and set_stage.

Projector is checked by behaviour, not by class names: whatever module the student builds, its
nn.Linear layers are found, the order they run in is recorded with forward hooks, and the output
is recomputed as Linear -> GELU -> Linear with the student's own weights (exact GELU or its tanh
approximation). set_stage is run on real MultimodalModels from several starting states and must
leave exactly the right parameters trainable, change no weight, and reject any other stage.

When a case fails, the catalogue of each exercise (PROJECTOR_MISTAKES, SET_STAGE_MISTAKES) is run
on the same inputs: a Projector mistake is built with the same sizes, given the student's own
Linear weights, and must give the same layers, parameter count, output and gradient flow; a
set_stage mistake is run through the same cases as the student's (so it must pass the ones the
student's passed) and must leave the same requires_grad flags and weights in the failing one (the
train()/eval() mistake also the same training modes), or handle the bad stages the same way (what
it raises, whether it switched a flag). Only a mistake that matches is named.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model import ModelConfig, MultimodalModel
from . import trusted
from ._common import CheckError, Raised, allclose, call, equal, fail, passed, quiet, raised, register, short
from ._mistakes import Mistake, catalogue, matching
from ._recipe_mistakes import LM_TRAINABLE_IN_STAGE1

__all__ = ["check_Projector", "check_set_stage"]

_BOXES = ("vision_encoder", "projector", "language_model")


# -- Projector: the catalogue -----------------------------------------------------------------------
# Each is a drop-in Projector(vision_dim, llm_dim) with one mistake.

def projector_single_linear(vision_dim, llm_dim):
    return nn.Linear(vision_dim, llm_dim)


def projector_no_activation(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim))


def projector_relu(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.ReLU(), nn.Linear(llm_dim, llm_dim))


def projector_silu(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.SiLU(), nn.Linear(llm_dim, llm_dim))


def projector_gelu_at_end(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim), nn.GELU())


def projector_hidden_vision_dim(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, vision_dim), nn.GELU(), nn.Linear(vision_dim, llm_dim))


def projector_hidden_twice_llm_dim(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, 2 * llm_dim), nn.GELU(), nn.Linear(2 * llm_dim, llm_dim))


def projector_two_hidden_layers(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim), nn.GELU(),
                         nn.Linear(llm_dim, llm_dim))


def projector_dims_swapped(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(llm_dim, vision_dim), nn.GELU(), nn.Linear(vision_dim, llm_dim))


def projector_layer_norm(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim), nn.LayerNorm(llm_dim))


def projector_no_bias(vision_dim, llm_dim):
    return nn.Sequential(nn.Linear(vision_dim, llm_dim, bias=False), nn.GELU(), nn.Linear(llm_dim, llm_dim, bias=False))


class ProjectorNoGrad(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def forward(self, features):
        with torch.no_grad():
            return self.fc2(F.gelu(self.fc1(features)))


class ProjectorWithoutSuper(nn.Module):
    def __init__(self, vision_dim, llm_dim):  # super().__init__() missing
        self.fc1, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def forward(self, features):
        return self.fc2(F.gelu(self.fc1(features)))


class ProjectorPlainClass:  # not an nn.Module: no parameters() for the optimizer, no .to(device), no hooks
    def __init__(self, vision_dim, llm_dim):
        self.fc1, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def __call__(self, features):
        return self.fc2(F.gelu(self.fc1(features)))


_MLP2X = "Linear(vision_dim, llm_dim) -> GELU -> Linear(llm_dim, llm_dim)"
PROJECTOR_MISTAKES = catalogue(
    "Projector",
    Mistake("a single Linear layer (LLaVA-1's projector)", projector_single_linear,
            f"LLaVA-1.5 (and this course) uses two Linear layers with a GELU between: {_MLP2X}"),
    Mistake("no activation between the two Linear layers", projector_no_activation,
            "two Linear layers in a row are a single linear map; put a GELU between them"),
    Mistake("ReLU instead of GELU", projector_relu, "LLaVA's projector uses GELU (nn.GELU() or F.gelu)"),
    Mistake("SiLU instead of GELU", projector_silu, "LLaVA's projector uses GELU (nn.GELU() or F.gelu)"),
    Mistake("a GELU after the last Linear too", projector_gelu_at_end,
            "the projector ends with the second Linear: its output goes straight into the language model"),
    Mistake("hidden width vision_dim instead of llm_dim", projector_hidden_vision_dim,
            f"the hidden width is llm_dim, as in LLaVA's mlp2x_gelu: {_MLP2X}"),
    Mistake("hidden width 2 * llm_dim instead of llm_dim", projector_hidden_twice_llm_dim,
            f"the 2x of mlp2x_gelu is two layers, not twice the width: {_MLP2X}"),
    Mistake("three Linear layers (two hidden layers)", projector_two_hidden_layers,
            f"the 2x of mlp2x_gelu counts Linear layers: two, with one GELU between: {_MLP2X}"),
    Mistake("in and out dimensions swapped: Linear(llm_dim, vision_dim) first", projector_dims_swapped,
            f"nn.Linear(in_features, out_features): the first layer reads vision_dim features; {_MLP2X}"),
    Mistake("a LayerNorm after the last Linear", projector_layer_norm,
            f"no extra layers or parameters: {_MLP2X}"),
    Mistake("Linear layers without biases (bias=False)", projector_no_bias, "keep the biases (nn.Linear's default)"),
    Mistake("forward runs under torch.no_grad()", ProjectorNoGrad,
            "no torch.no_grad() or .detach() inside forward: stage 1 trains exactly these weights"),
    Mistake("super().__init__() not called before creating the layers", ProjectorWithoutSuper,
            "an nn.Module subclass calls super().__init__() first, before assigning any layer"),
    Mistake("a plain class, not an nn.Module", ProjectorPlainClass,
            "class Projector(nn.Module), with super().__init__() first: the model needs its parameters() and .to()"),
)


# -- Projector: what a projector does, for matching -----------------------------------------------

def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, trusted.Linear)]


def _in_order(linears: list[nn.Linear], order: list[nn.Linear], vision_dim: int) -> list[nn.Linear]:
    """The Linear layers in the order forward ran them; if hooks did not see each once (F.linear), by input width."""
    if len(order) == len(linears) and len({id(m) for m in order}) == len(linears):
        return order
    return sorted(linears, key=lambda m: m.in_features != vision_dim)


def _layers(order: list[nn.Linear]) -> tuple:
    return tuple((m.in_features, m.out_features, m.bias is not None) for m in order)


def _profile(module: nn.Module, x: torch.Tensor, vision_dim: int) -> tuple[dict, list[nn.Linear]]:
    """What a projector does on x (its Linear layers in order, its size, its output, which weights get a
    gradient), and its Linear layers in that order."""
    linears, seen = _linears(module), []
    hooks = [m.register_forward_hook(lambda m, args, out: seen.append(m)) for m in linears]
    try:
        with quiet():
            out = module(x)
    except Exception as error:  # noqa: BLE001 - what it raises is part of what it does
        out = raised(error)
    finally:
        for hook in hooks:
            hook.remove()
    order = _in_order(linears, seen, vision_dim)
    grads = None
    if isinstance(out, torch.Tensor):
        grads = (out.requires_grad,)
        if out.requires_grad:
            module.zero_grad(set_to_none=True)
            g = torch.Generator().manual_seed(1)
            try:
                with quiet():
                    (out * trusted.randn(out.shape, generator=g)).sum().backward()
                grads += tuple(p.grad is not None and bool(p.grad.abs().sum() > 0)
                               for m in order for p in (m.weight, m.bias) if p is not None)
            except Exception as error:  # noqa: BLE001
                grads += (raised(error),)
        out = out.detach()
    profile = {"layers": _layers(order), "count": sum(p.numel() for p in module.parameters()), "out": out,
               "grads": grads}
    return profile, order


def _projector_outcome(fn, vision_dim: int, llm_dim: int, x: torch.Tensor, weights: list[nn.Linear]):
    """Build fn(vision_dim, llm_dim); if its Linear layers have the shapes of `weights` (the student's, in the
    order they run), give them those weights and biases, so that outputs compare; then its profile."""
    try:
        with quiet():
            module = fn(vision_dim, llm_dim)
    except Exception as error:  # noqa: BLE001
        return raised(error)
    theirs = _linears(module)
    if weights and _layers(theirs) == _layers(weights):
        with torch.no_grad():
            for a, b in zip(theirs, weights):
                a.weight.copy_(b.weight)
                if a.bias is not None:
                    a.bias.copy_(b.bias)
    return _profile(module, x, vision_dim)[0]


def _same_profile(a, b) -> bool:
    if isinstance(a, Raised) or isinstance(b, Raised):
        return isinstance(a, Raised) and isinstance(b, Raised) and a == b
    if (a["layers"], a["count"], a["grads"]) != (b["layers"], b["count"], b["grads"]):
        return False
    x, y = a["out"], b["out"]
    if isinstance(x, Raised) or isinstance(y, Raised):
        return x == y
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.shape != y.shape:
        return False
    return bool(allclose(x.double(), y.double(), atol=1e-5, rtol=1e-4))


class _Projector:
    """One case of check_Projector: the sizes, the input, and the student's module once built."""

    def __init__(self, Projector, vision_dim: int, llm_dim: int):
        self.Projector, self.vision_dim, self.llm_dim = Projector, vision_dim, llm_dim
        self.case = f"Projector({vision_dim}, {llm_dim})"
        g = torch.Generator().manual_seed(vision_dim * 1000 + llm_dim)
        self.x = trusted.randn(2, 5, vision_dim, generator=g)  # (B, N, vision_dim)
        self.module: nn.Module | None = None

    def matches(self, received, weights: list[nn.Linear] = ()) -> list[Mistake]:
        """The catalogue mistakes that do what the student's projector did in this case (given its weights)."""
        with trusted.rng():
            trusted.manual_seed(0)
            return matching(PROJECTOR_MISTAKES,
                            lambda fn: _projector_outcome(fn, self.vision_dim, self.llm_dim, self.x, weights),
                            received, _same_profile)

    def fail(self, case: str, expected: object, received: object, hint: str) -> None:
        """Fail, naming the catalogue mistakes that do exactly what the student's module does on this case."""
        profile, order = _profile(self.module, self.x, self.vision_dim)
        fail(case, expected, received, hint, matches=self.matches(profile, order))

    def not_a_module_matches(self) -> list[Mistake]:
        """What is not an nn.Module is compared by what it returns on x, built from the same random state."""
        def outcome(fn):
            with trusted.rng():
                trusted.manual_seed(0)
                with quiet():
                    built = fn(self.vision_dim, self.llm_dim)
                if isinstance(built, trusted.Module):
                    return None
                try:
                    with quiet(), torch.no_grad():
                        return built(self.x)
                except Exception as error:  # noqa: BLE001
                    return raised(error)

        def same(a, b):
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                return a.shape == b.shape and bool(allclose(a.double(), b.double(), atol=1e-5, rtol=1e-4))
            return isinstance(a, Raised) and a == b

        try:
            received = outcome(self.Projector)
        except Exception:  # noqa: BLE001 - built once already; if it cannot be built again, nothing matches
            return []
        return matching(PROJECTOR_MISTAKES, outcome, received, same)

    def build(self) -> tuple[nn.Module, list[nn.Linear]]:
        """Projector(vision_dim, llm_dim) is an nn.Module with at least one nn.Linear inside."""
        case, Projector = self.case, self.Projector
        hint = "Projector(vision_dim, llm_dim) builds an nn.Module: look at its __init__"
        try:
            with quiet():
                module = Projector(self.vision_dim, self.llm_dim)
        except CheckError:
            raise
        except NotImplementedError:
            call(case, Projector, self.vision_dim, self.llm_dim, hint=hint)  # the stub's message
            raise
        except Exception as error:  # any error in student code is the student's to see
            fail(case, "no exception", raised(error), hint, matches=self.matches(raised(error)))
        if not isinstance(module, trusted.Module):
            fail(case, "an nn.Module", f"{type(module).__name__}: {short(module)}",
                 "Projector is an nn.Module subclass (or a function returning an nn.Module, such as nn.Sequential)",
                 matches=self.not_a_module_matches())
        linears = _linears(module)
        if not linears:
            fail(case, "two nn.Linear layers among the module's submodules",
                 "module.modules() finds no nn.Linear",
                 "a layer is a submodule when it is assigned to an attribute (self.fc1 = nn.Linear(...)) or held in "
                 "nn.Sequential / nn.ModuleList; layers kept in a plain list or dict are not registered, so neither "
                 "the optimizer nor this check can see them")
        self.module = module
        return module, linears

    def forward_in_order(self, linears: list[nn.Linear]) -> tuple[torch.Tensor, list[nn.Linear]]:
        """The output on x, and the Linear layers in the order forward runs them (recorded with hooks)."""
        module, x = self.module, self.x
        case = f"{self.case} applied to features of shape {tuple(x.shape)}"
        order: list[nn.Linear] = []
        hooks = [m.register_forward_hook(lambda m, args, out: order.append(m)) for m in linears]
        try:
            with quiet():
                out = module(x)
        except CheckError:
            raise
        except NotImplementedError:
            call(case, module, x)
            raise
        except Exception as error:  # any error in student code is the student's to see
            self.fail(case, "no exception", raised(error),
                      f"the projector maps (B, N, vision_dim) -> (B, N, llm_dim): {_MLP2X}")
        finally:
            for hook in hooks:
                hook.remove()
        shape = (*x.shape[:-1], self.llm_dim)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
            what = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"{type(out).__name__}: {short(out)}"
            self.fail(f"{self.case}(features {tuple(x.shape)})", f"a tensor of shape {shape}", what,
                      f"the projector maps (B, N, vision_dim) -> (B, N, llm_dim): {_MLP2X}")
        return out, order

    def two_layers(self, linears: list[nn.Linear], order: list[nn.Linear]) -> tuple[nn.Linear, nn.Linear]:
        """Exactly two Linear layers, vision_dim -> llm_dim then llm_dim -> llm_dim, with biases and nothing else."""
        case, vision_dim, llm_dim = self.case, self.vision_dim, self.llm_dim
        if len(order) == 1 or len(linears) == 1:
            self.fail(case, "Linear -> GELU -> Linear: two Linear layers", "one Linear layer",
                      f"the projector has two Linear layers with a GELU between: {_MLP2X}")
        if len(order) > 2 or len(linears) > 2:
            self.fail(case, "exactly two Linear layers", f"{max(len(order), len(linears))} Linear layers (or calls)",
                      f"{_MLP2X}, nothing more")
        order = _in_order(linears, order, vision_dim)
        first, second = order
        shapes = [(m.in_features, m.out_features) for m in (first, second)]
        if shapes != [(vision_dim, llm_dim), (llm_dim, llm_dim)]:
            self.fail(case, f"Linear({vision_dim}, {llm_dim}) then Linear({llm_dim}, {llm_dim})",
                      f"Linear{shapes[0]} then Linear{shapes[1]}",
                      f"nn.Linear(in_features, out_features), as in LLaVA's mlp2x_gelu: {_MLP2X}")
        count = sum(p.numel() for p in self.module.parameters())
        expected = vision_dim * llm_dim + llm_dim + llm_dim * llm_dim + llm_dim
        if count != expected:
            biases = sum(m.bias is not None for m in (first, second))
            self.fail(f"{case}: number of parameters", f"{expected:,} (two Linear layers with biases)",
                      f"{count:,} ({biases} of the 2 Linear layers have a bias)",
                      f"{_MLP2X} with nn.Linear's default biases, and no other parameters")
        return first, second

    def gelu_between(self, out: torch.Tensor, first: nn.Linear, second: nn.Linear) -> None:
        """The output is second(GELU(first(x))) with the student's own weights (exact GELU or its tanh form)."""
        x = self.x
        w1, b1 = first.weight.detach(), None if first.bias is None else first.bias.detach()
        w2, b2 = second.weight.detach(), None if second.bias is None else second.bias.detach()
        h = trusted.linear(x, w1, b1)  # (B, N, llm_dim)
        exact = trusted.linear(trusted.gelu(h), w2, b2)
        tanh = trusted.linear(trusted.gelu(h, approximate="tanh"), w2, b2)
        received = out.detach()
        if any(allclose(received, value, atol=1e-5, rtol=1e-4) for value in (exact, tanh)):
            return
        worst = float((received - exact).abs().max())
        self.fail(f"{self.case} on features {tuple(x.shape)}", "Linear -> GELU -> Linear of your own layers' weights",
                  f"an output that differs by up to {worst:.3g}",
                  "the output should be second(GELU(first(features))): look at forward")

    def gradients_flow(self) -> None:
        """A backward pass from the output puts a nonzero gradient on every weight and bias."""
        module, x = self.module, self.x
        case = f"{self.case}: gradients reach every parameter"
        hint = "every weight and bias gets a gradient from the output: look at forward for what leaves the graph"
        module.zero_grad(set_to_none=True)
        with trusted.rng():
            trusted.manual_seed(0)
            out = call(case, module, x.clone().requires_grad_(True))
            if not out.requires_grad:
                self.fail(case, "an output that autograd can differentiate", "an output with requires_grad=False", hint)
            call(case, lambda: (out * trusted.randn(out.shape)).sum().backward())
        missing = [name for name, p in module.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        if missing:
            self.fail(case, "a gradient on every weight and bias", f"none on {missing}", hint)

    def run(self) -> int:
        """Build the projector, check its layers, its function and its gradients; return its size."""
        module, linears = self.build()
        out, order = self.forward_in_order(linears)
        first, second = self.two_layers(linears, order)
        self.gelu_between(out, first, second)
        self.gradients_flow()
        return sum(p.numel() for p in module.parameters())


@register
def check_Projector(Projector) -> None:
    """Check Projector(vision_dim, llm_dim): Linear -> GELU -> Linear, (B, N, vision_dim) -> (B, N, llm_dim)."""
    with trusted.rng():
        trusted.manual_seed(0)
        # (16, 24) first: there a hidden width of vision_dim (16) and of 2 * llm_dim (48) differ, unlike in (128, 64)
        _Projector(Projector, 16, 24).run()
        count = _Projector(Projector, 128, 64).run()
        _Projector(Projector, 10, 6).run()
    passed("Projector", f"Linear -> GELU -> Linear with the right shapes; Projector(128, 64) has {count:,} parameters")


# -- set_stage: the catalogue ---------------------------------------------------------------------
# Each is a drop-in set_stage(model, stage) with one mistake; LM_TRAINABLE_IN_STAGE1 (_recipe_mistakes.py)
# is the one whose effect on the trained model was measured.

def _bad_stage(stage) -> None:
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")


def set_stage_lm_frozen_in_stage2(model, stage):
    _bad_stage(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(False)


def set_stage_vision_trained_in_stage2(model, stage):
    _bad_stage(stage)
    if stage == 1:
        model.requires_grad_(False)
        model.projector.requires_grad_(True)
    else:
        model.requires_grad_(True)


def set_stage_vision_never_frozen(model, stage):
    _bad_stage(stage)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 2)


def set_stage_stage2_only_lm(model, stage):
    _bad_stage(stage)
    if stage == 1:
        model.vision_encoder.requires_grad_(False)
        model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 2)


def set_stage_projector_frozen(model, stage):
    _bad_stage(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(False)
    model.language_model.requires_grad_(stage == 2)


def set_stage_projector_frozen_in_stage2(model, stage):
    _bad_stage(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(stage == 1)
    model.language_model.requires_grad_(stage == 2)


def set_stage_lm_flags_flipped(model, stage):
    _bad_stage(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    for p in model.language_model.parameters():  # right only if the language model was in the other stage's state
        p.requires_grad_(not p.requires_grad)


def set_stage_train_eval(model, stage):
    _bad_stage(stage)
    model.vision_encoder.eval()
    model.projector.train()
    model.language_model.train(stage == 2)


def set_stage_lm_blocks_only(model, stage):
    _bad_stage(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.blocks.requires_grad_(stage == 2)


def set_stage_lm_embedding_and_blocks_only(model, stage):
    _bad_stage(stage)
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    for part in (model.language_model.token_embedding, model.language_model.blocks):  # positions, norm, head missed
        part.requires_grad_(stage == 2)


def set_stage_no_value_error(model, stage):
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(stage == 2)


def set_stage_range_check(model, stage):
    if not 1 <= stage <= 2:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    set_stage_no_value_error(model, stage)


def set_stage_key_error(model, stage):
    lm_trains = {1: False, 2: True}[stage]
    model.vision_encoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.language_model.requires_grad_(lm_trains)


def set_stage_raises_late(model, stage):
    set_stage_no_value_error(model, stage)
    _bad_stage(stage)


def set_stage_first_projector_layer_reset(model, stage):
    _bad_stage(stage)
    set_stage_no_value_error(model, stage)
    model.projector.fc1.reset_parameters()


def set_stage_projector_reset(model, stage):
    _bad_stage(stage)
    set_stage_no_value_error(model, stage)
    for layer in model.projector.modules():
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()


_FIRST = "check the stage first: if stage not in (1, 2): raise ValueError(...), before touching the model"
SET_STAGE_MISTAKES = catalogue(
    "set_stage",
    LM_TRAINABLE_IN_STAGE1,
    Mistake("the language model frozen in stage 2", set_stage_lm_frozen_in_stage2,
            "stage 2 trains the language model too: language_model.requires_grad_(stage == 2)"),
    Mistake("the vision encoder trained in stage 2", set_stage_vision_trained_in_stage2,
            "the vision encoder never trains: vision_encoder.requires_grad_(False) in both stages"),
    Mistake("the vision encoder never frozen", set_stage_vision_never_frozen,
            "freeze the vision encoder in every stage, whatever state the model was in: "
            "vision_encoder.requires_grad_(False)"),
    Mistake("stage 2 switches only the language model", set_stage_stage2_only_lm,
            "set all three parts in every stage, whatever state the model was in: stage 2 also freezes the vision "
            "encoder and trains the projector"),
    Mistake("the projector frozen", set_stage_projector_frozen,
            "the projector is what stage 1 trains, and stage 2 trains it too: projector.requires_grad_(True)"),
    Mistake("the projector frozen in stage 2", set_stage_projector_frozen_in_stage2,
            "stage 2 trains the projector and the language model: projector.requires_grad_(True) in both stages"),
    Mistake("the language model's flags flipped (not p.requires_grad) instead of set", set_stage_lm_flags_flipped,
            "set the flags, do not flip them: the result must not depend on the state the model was in; "
            "language_model.requires_grad_(stage == 2)"),
    Mistake("train()/eval() used instead of requires_grad: no flag switched", set_stage_train_eval,
            "train() and eval() only switch dropout and normalisation modes; freezing is requires_grad_(False)"),
    Mistake("only language_model.blocks switched", set_stage_lm_blocks_only,
            "switch the whole language model (embeddings, blocks, norm and output head): "
            "language_model.requires_grad_(stage == 2)"),
    Mistake("only token_embedding and blocks switched: positions, norm and head missed",
            set_stage_lm_embedding_and_blocks_only,
            "switch the whole language model, not a list of its parts: language_model.requires_grad_(stage == 2)"),
    Mistake("no ValueError for stages other than 1 and 2", set_stage_no_value_error, _FIRST),
    Mistake("a range check (1 <= stage <= 2) that lets 1.5 through", set_stage_range_check,
            "only 1 and 2 are stages: test membership, if stage not in (1, 2): raise ValueError(...)"),
    Mistake("a KeyError instead of a ValueError for other stages", set_stage_key_error, _FIRST),
    Mistake("the ValueError raised only after switching flags", set_stage_raises_late,
            "check the stage first and raise before touching the model: a bad call must change nothing"),
    Mistake("the projector's weights re-initialised", set_stage_projector_reset,
            "set_stage only switches requires_grad; it must not re-create or reset layers"),
    Mistake("the projector's first layer re-initialised", set_stage_first_projector_layer_reset,
            "set_stage only switches requires_grad; it must not re-create or reset layers"),
)


# -- set_stage: the check -------------------------------------------------------------------------

_TINY = ModelConfig(image_size=16, patch_size=8, vision_dim=8, llm_dim=8, num_heads=2, num_layers=1, max_positions=16)
_BAD_STAGES = (0, 3, -1, 1.5)


def _model(cfg: ModelConfig = _TINY) -> MultimodalModel:
    with trusted.rng():
        trusted.manual_seed(0)
        return MultimodalModel(cfg)


def _flags(model: nn.Module) -> dict[str, list[tuple[str, bool]]]:
    return {box: [(f"{box}.{name}", p.requires_grad) for name, p in getattr(model, box).named_parameters()]
            for box in _BOXES}


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(model: nn.Module, before: dict[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(name for name, p in model.named_parameters() if not equal(p.detach(), before[name]))


def _modes(model: nn.Module) -> tuple[bool, ...]:
    """Whether each part is in training mode: train() and eval() switch these, and nothing else."""
    return tuple(getattr(model, box).training for box in _BOXES)


def _result(model: nn.Module, before: dict[str, torch.Tensor]) -> tuple:
    """What set_stage left: the requires_grad flags, the training modes, and the weights it changed."""
    return _flags(model), _modes(model), _changed(model, before)


# The flag cases, in the order the check runs them: (case, stage, how to get the model it runs on).
# "new": a new model; "frozen"/"trainable": a new model with every parameter frozen / trainable;
# "same": the model of the previous case, as set_stage left it; "refrozen": that model, every parameter frozen again.
_STEPS = (
    ("set_stage(model, 1) on a new model", 1, "new"),
    ("set_stage(model, 2) after stage 1", 2, "same"),
    ("set_stage(model, 1) again after stage 2", 1, "same"),
    ("set_stage(model, 2) on a model with every parameter frozen", 2, "frozen"),
    ("set_stage(model, 1) on a model with every parameter frozen", 1, "refrozen"),
    ("set_stage(model, 1) on a model with every parameter trainable", 1, "trainable"),
    ("set_stage(model, 2) on a model with every parameter trainable", 2, "trainable"),
)


def _prepare(model: MultimodalModel | None, how: str) -> MultimodalModel:
    if how in ("new", "frozen", "trainable"):
        model = _model()
    if how in ("frozen", "refrozen"):
        model.requires_grad_(False)
    if how == "trainable":
        model.requires_grad_(True)
    return model


def _right(flags: dict, stage: int) -> dict:
    want = {"vision_encoder": False, "projector": True, "language_model": stage == 2}
    return {box: [(name, want[box]) for name, _ in flags[box]] for box in _BOXES}


class _Earlier(str):
    """A catalogue mistake that already fails an earlier case: it cannot be what the student wrote."""


def _replay(fn, until: int):
    """Run fn through the flag cases up to case `until`, as the check does: what it left in that case, or
    _Earlier if it went wrong in a case before (where the student's set_stage was right)."""
    model = None
    for i, (_, stage, how) in enumerate(_STEPS[: until + 1]):
        model = _prepare(model, how)
        before = _weights(model)
        with trusted.rng(), contextlib.redirect_stdout(io.StringIO()):
            fn(model, stage)
        result = _result(model, before)
        if i == until:
            return result
        if result[0] != _right(result[0], stage) or result[2]:
            return _Earlier(_STEPS[i][0])
    return None


def _stage_matches(step: int, received: tuple) -> list[Mistake]:
    """The mistakes that pass the cases before `step` and leave the model as the student's set_stage did in it:
    the same requires_grad flags and changed weights, and for train()/eval() the same training modes too."""
    def outcome(fn):
        result = _replay(fn, step)
        if isinstance(result, tuple) and fn is not set_stage_train_eval:
            result = (result[0], None, result[2])  # a mistake about flags: modes do not matter
        return result

    def same(a, b):
        return isinstance(b, tuple) and a[0] == b[0] and a[2] == b[2] and (b[1] is None or a[1] == b[1])

    return matching(SET_STAGE_MISTAKES, outcome, received, same)


_EXPECTED = {"vision_encoder": "the vision encoder is frozen in both stages",
             "projector": "the projector trains in both stages",
             "language_model": "the language model is frozen in stage 1 and trains in stage 2"}


def _stage_case(set_stage, step: int, model: nn.Module) -> None:
    case, stage, _ = _STEPS[step]
    before = _weights(model)
    with contextlib.redirect_stdout(io.StringIO()):  # a set_stage that prints its summary is fine; keep the check to one line
        call(case, set_stage, model, stage, hint="set_stage(model, stage) sets requires_grad on the three parts of the model")
    flags = _flags(model)
    want = {"vision_encoder": False, "projector": True, "language_model": stage == 2}
    for box in ("projector", "language_model", "vision_encoder"):
        wrong = [name for name, trainable in flags[box] if trainable != want[box]]
        if wrong:
            total = len(flags[box])
            state = "trainable" if want[box] else "frozen"
            received = f"{len(wrong)} of its {total} parameter tensors are not {state}, e.g. {wrong[0]}"
            if len(wrong) < total:
                parts = list(dict.fromkeys(w.split(".", 1)[1].rsplit(".", 1)[0] for w in wrong))
                received += f" (not {state}: {', '.join(parts[:4])}; the rest are)"
            hint = (f"{_EXPECTED[box]}: every parameter of model.{box} has requires_grad={want[box]} after "
                    f"set_stage(model, {stage}), whatever state the model was in")
            fail(f"{case}: model.{box}", f"every parameter {state}", received, hint,
                 matches=_stage_matches(step, _result(model, before)))
    changed = _changed(model, before)
    if changed:
        fail(f"{case}: weights", "every weight unchanged", f"{changed[0]} changed ({len(changed)} tensors changed)",
             "set_stage only switches requires_grad: no weight changes",
             matches=_stage_matches(step, _result(model, before)))


def _odd_model() -> MultimodalModel:
    """A state no stage produces (vision encoder on, projector off, language model half on), so that any
    requires_grad switch made before the ValueError shows."""
    odd = _model()
    odd.vision_encoder.requires_grad_(True)
    odd.projector.requires_grad_(False)
    for i, p in enumerate(odd.language_model.parameters()):
        p.requires_grad_(i % 2 == 0)
    return odd


def _bad_stage_outcome(fn, stage) -> tuple[str | None, bool]:
    """fn(model, stage) on the odd model: the type of what it raised (None if nothing), whether it switched a flag."""
    odd = _odd_model()
    before = _flags(odd)
    raised = None
    try:
        with quiet(), trusted.rng(), contextlib.redirect_stdout(io.StringIO()):
            fn(odd, stage)
    except Exception as error:  # noqa: BLE001 - what it raises is what is compared
        raised = type(error).__name__
    return raised, _flags(odd) != before


def _bad_stages(fn):
    """How fn handles the stages 0, 3, -1 and 1.5, or _Earlier if it fails a flag case (the student's passed them)."""
    earlier = _replay(fn, len(_STEPS) - 1)
    if isinstance(earlier, _Earlier) or earlier[0] != _right(earlier[0], _STEPS[-1][1]) or earlier[2]:
        return _Earlier("flags")
    return tuple(_bad_stage_outcome(fn, stage) for stage in _BAD_STAGES)


def _bad_stages_matches(set_stage) -> list[Mistake]:
    """The mistakes that handle the stages 0, 3, -1 and 1.5 as the student's set_stage does."""
    received = tuple(_bad_stage_outcome(set_stage, stage) for stage in _BAD_STAGES)
    return matching(SET_STAGE_MISTAKES, _bad_stages, received, lambda a, b: a == b)


@register
def check_set_stage(set_stage) -> None:
    """Check set_stage(model, stage): 1 trains the projector, 2 the projector and LM, the vision encoder never."""
    model = None
    for step, (_, _, how) in enumerate(_STEPS):
        model = _prepare(model, how)
        _stage_case(set_stage, step, model)

    for stage in _BAD_STAGES:
        case = f"set_stage(model, {stage!r})"
        hint = "LLaVA has exactly two stages: raise ValueError(...) for anything but 1 and 2, before changing anything"
        odd = _odd_model()
        before = _flags(odd)
        try:
            with quiet(), contextlib.redirect_stdout(io.StringIO()):
                set_stage(odd, stage)
        except ValueError:
            after = _flags(odd)
            switched = [name for box in _BOXES for (name, flag), (_, was) in zip(after[box], before[box]) if flag != was]
            if switched:
                fail(case, "ValueError, with every requires_grad flag left as it was",
                     f"ValueError, but only after switching {len(switched)} parameter tensors, e.g. {switched[0]}",
                     "raise before touching the model: a bad call must change nothing",
                     matches=_bad_stages_matches(set_stage))
            continue
        except Exception as error:  # the wrong kind of error is the student's to see
            fail(case, "ValueError", raised(error), hint, matches=_bad_stages_matches(set_stage))
        fail(case, "ValueError", "no exception", hint, matches=_bad_stages_matches(set_stage))

    full = _model(ModelConfig())
    counts = []
    for stage in (1, 2):
        with contextlib.redirect_stdout(io.StringIO()):
            call(f"set_stage(model, {stage}) on the full-size model", set_stage, full, stage)
        counts.append(sum(p.numel() for p in full.parameters() if p.requires_grad))
    total = sum(p.numel() for p in full.parameters())
    passed("set_stage", f"stage 1 trains {counts[0]:,} of {total:,} parameters (the projector), stage 2 {counts[1]:,} "
           "(projector + language model); the vision encoder never; other stages raise ValueError")
