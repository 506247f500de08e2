"""Checks for notebook 03_model: Projector and set_stage.

Projector is checked by behaviour, not by class names: whatever module the student builds, its
nn.Linear layers are found, the order they run in is recorded with forward hooks, and the output
is recomputed as Linear -> GELU -> Linear with the student's own weights (exact GELU or its tanh
approximation). set_stage is run on real MultimodalModels from several starting states and must
leave exactly the right parameters trainable, change no weight, and reject any other stage.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn as nn

from ..model import ModelConfig, MultimodalModel
from . import trusted
from ._common import allclose, call, equal, expect_tensor, fail, passed, quiet, register, short

__all__ = ["check_Projector", "check_set_stage"]

_BOXES = ("vision_encoder", "projector", "language_model")


# -- Projector ------------------------------------------------------------------------------------

def _build(Projector, case: str, vision_dim: int, llm_dim: int) -> tuple[nn.Module, list[nn.Linear]]:
    """Projector(vision_dim, llm_dim) is an nn.Module with at least one nn.Linear inside."""
    module = call(case, Projector, vision_dim, llm_dim,
                  hint="Projector(vision_dim, llm_dim) builds an nn.Module; a subclass calls super().__init__() first")
    if not isinstance(module, trusted.Module):
        fail(case, "an nn.Module", f"{type(module).__name__}: {short(module)}",
             "subclass nn.Module (call super().__init__() first) or return an nn.Sequential")
    linears = [m for m in module.modules() if isinstance(m, trusted.Linear)]
    if not linears:
        fail(case, "two nn.Linear layers", "no nn.Linear inside", "build the layers with nn.Linear")
    return module, linears


def _forward_in_order(module: nn.Module, linears: list[nn.Linear], case: str, x: torch.Tensor,
                      llm_dim: int) -> tuple[torch.Tensor, list[nn.Linear]]:
    """The output on x, and the Linear layers in the order forward runs them (recorded with hooks)."""
    order: list[nn.Linear] = []
    hooks = [m.register_forward_hook(lambda m, args, out: order.append(m)) for m in linears]
    try:
        out = call(f"{case} applied to features of shape {tuple(x.shape)}", module, x,
                   hint="the first Linear maps vision_dim -> llm_dim, the second llm_dim -> llm_dim")
    finally:
        for hook in hooks:
            hook.remove()
    out = expect_tensor(f"{case}(features {tuple(x.shape)})", out, (*x.shape[:-1], llm_dim))
    return out, order


def _two_layers(module: nn.Module, linears: list[nn.Linear], order: list[nn.Linear], case: str, vision_dim: int,
                llm_dim: int) -> tuple[nn.Linear, nn.Linear]:
    """Exactly two Linear layers, vision_dim -> llm_dim then llm_dim -> llm_dim, with biases and nothing else."""
    if len(order) == 1 or len(linears) == 1:
        fail(case, "Linear -> GELU -> Linear: two Linear layers", "one Linear layer",
             "a single Linear is LLaVA-1's projector; LLaVA-1.5 (and this course) uses two with a GELU between")
    if len(order) > 2 or len(linears) > 2:
        fail(case, "exactly two Linear layers", f"{max(len(order), len(linears))} Linear layers (or calls)",
             "Linear(vision_dim, llm_dim) -> GELU -> Linear(llm_dim, llm_dim), nothing more")
    if len(order) != 2:  # the layers were used through F.linear: order them by their input width
        order = sorted(linears, key=lambda m: m.in_features != vision_dim)
    first, second = order
    shapes = [(m.in_features, m.out_features) for m in (first, second)]
    if shapes != [(vision_dim, llm_dim), (llm_dim, llm_dim)]:
        fail(case, f"Linear({vision_dim}, {llm_dim}) then Linear({llm_dim}, {llm_dim})",
             f"Linear{shapes[0]} then Linear{shapes[1]}",
             "the hidden width is llm_dim, as in LLaVA's mlp2x_gelu: Linear(vision_dim, llm_dim), GELU, Linear(llm_dim, llm_dim)")
    count = sum(p.numel() for p in module.parameters())
    expected = vision_dim * llm_dim + llm_dim + llm_dim * llm_dim + llm_dim
    if count != expected:
        fail(f"{case}: number of parameters", f"{expected:,} (two Linear layers with biases)", f"{count:,}",
             "no extra layers or parameters, and keep the biases (nn.Linear's default)")
    return first, second


def _gelu_between(out: torch.Tensor, first: nn.Linear, second: nn.Linear, case: str, x: torch.Tensor) -> None:
    """The output is second(GELU(first(x))) with the student's own weights (exact GELU or its tanh form)."""
    w1, b1 = first.weight.detach(), None if first.bias is None else first.bias.detach()
    w2, b2 = second.weight.detach(), None if second.bias is None else second.bias.detach()
    h = trusted.linear(x, w1, b1)  # (B, N, llm_dim)
    candidates = {
        "gelu": trusted.linear(trusted.gelu(h), w2, b2),
        "gelu_tanh": trusted.linear(trusted.gelu(h, approximate="tanh"), w2, b2),
    }
    received = out.detach()
    if any(allclose(received, value, atol=1e-5, rtol=1e-4) for value in candidates.values()):
        return
    mistakes = {
        "nothing between the two layers: two Linear layers in a row are a single linear map; put a GELU between them":
            trusted.linear(h, w2, b2),
        "that is ReLU; LLaVA's projector uses GELU (nn.GELU() or F.gelu)": trusted.linear(trusted.relu(h), w2, b2),
        "no activation after the last layer: the projector ends with the second Linear": trusted.gelu(candidates["gelu"]),
    }
    hint = next((text for text, value in mistakes.items() if allclose(received, value, atol=1e-5, rtol=1e-4)),
                "the output should be second(GELU(first(features)))")
    worst = float((received - candidates["gelu"]).abs().max())
    fail(f"{case} on features {tuple(x.shape)}", "Linear -> GELU -> Linear of your own layers' weights",
         f"an output that differs by up to {worst:.3g}", hint)


def _gradients_flow(module: nn.Module, case: str, x: torch.Tensor) -> None:
    """A backward pass from the output puts a nonzero gradient on every weight and bias."""
    case = f"{case}: gradients reach every parameter"
    module.zero_grad(set_to_none=True)
    with trusted.rng():
        trusted.manual_seed(0)
        out = call(case, module, x.clone().requires_grad_(True))
        if not out.requires_grad:
            fail(case, "an output that autograd can differentiate", "an output with requires_grad=False",
                 "no torch.no_grad() or .detach() inside forward: stage 1 trains exactly these weights")
        call(case, lambda: (out * trusted.randn(out.shape)).sum().backward())
    missing = [name for name, p in module.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    if missing:
        fail(case, "a gradient on every weight and bias", f"none on {missing}",
             "no torch.no_grad() or .detach() inside forward: stage 1 trains exactly these weights")


def _projector_case(Projector, vision_dim: int, llm_dim: int) -> int:
    """Build Projector(vision_dim, llm_dim), check its layers, its function and its gradients; return its size."""
    case = f"Projector({vision_dim}, {llm_dim})"
    module, linears = _build(Projector, case, vision_dim, llm_dim)
    g = torch.Generator().manual_seed(vision_dim * 1000 + llm_dim)
    x = trusted.randn(2, 5, vision_dim, generator=g)  # (B, N, vision_dim)
    out, order = _forward_in_order(module, linears, case, x, llm_dim)
    first, second = _two_layers(module, linears, order, case, vision_dim, llm_dim)
    _gelu_between(out, first, second, case, x)
    _gradients_flow(module, case, x)
    return sum(p.numel() for p in module.parameters())


@register
def check_Projector(Projector) -> None:
    """Check Projector(vision_dim, llm_dim): Linear -> GELU -> Linear, (B, N, vision_dim) -> (B, N, llm_dim)."""
    with trusted.rng():
        trusted.manual_seed(0)
        count = _projector_case(Projector, 128, 64)
        _projector_case(Projector, 16, 24)
        _projector_case(Projector, 10, 6)
    passed("Projector", f"Linear -> GELU -> Linear with the right shapes; Projector(128, 64) has {count:,} parameters")


# -- set_stage ------------------------------------------------------------------------------------

_TINY = ModelConfig(image_size=16, patch_size=8, vision_dim=8, llm_dim=8, num_heads=2, num_layers=1, max_positions=16)


def _model(cfg: ModelConfig = _TINY) -> MultimodalModel:
    with trusted.rng():
        trusted.manual_seed(0)
        return MultimodalModel(cfg)


def _flags(model: nn.Module) -> dict[str, list[tuple[str, bool]]]:
    return {box: [(f"{box}.{name}", p.requires_grad) for name, p in getattr(model, box).named_parameters()]
            for box in _BOXES}


_HINTS = {
    ("language_model", 1): ("in stage 1 only the projector trains: freeze the language model with "
                                 "requires_grad_(False) (eval() does not freeze anything)"),
    ("language_model", 2): "stage 2 trains the language model: unfreeze all of model.language_model, not part of it",
    ("projector", 1): "the projector is what stage 1 trains: set its parameters to requires_grad=True",
    ("projector", 2): "stage 2 trains the projector as well; set it explicitly instead of relying on the previous state",
    ("vision_encoder", 1): "the vision encoder never trains: freeze it in every stage, whatever state the model was in",
    ("vision_encoder", 2): "the vision encoder never trains, not even in stage 2",
}


def _stage_case(set_stage, case: str, model: nn.Module, stage: int) -> None:
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
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
            hint = _HINTS[(box, stage)]
            if 0 < len(wrong) < total:
                parts = list(dict.fromkeys(w.split(".", 1)[1].rsplit(".", 1)[0] for w in wrong))
                hint += f"; some parts were missed ({', '.join(parts[:4])}): switch the whole submodule"
            fail(f"{case}: model.{box}", f"every parameter {state}", received, hint)
    for name, p in model.named_parameters():
        if not equal(p.detach(), before[name]):
            fail(f"{case}: weights", "every weight unchanged", f"{name} changed",
                 "set_stage only switches requires_grad; it must not re-create or modify layers")


@register
def check_set_stage(set_stage) -> None:
    """Check set_stage(model, stage): 1 trains the projector, 2 the projector and LM, the vision encoder never."""
    model = _model()
    _stage_case(set_stage, "set_stage(model, 1) on a new model", model, 1)
    _stage_case(set_stage, "set_stage(model, 2) after stage 1", model, 2)
    _stage_case(set_stage, "set_stage(model, 1) again after stage 2", model, 1)

    frozen = _model()
    frozen.requires_grad_(False)
    _stage_case(set_stage, "set_stage(model, 2) on a model with every parameter frozen", frozen, 2)
    frozen.requires_grad_(False)
    _stage_case(set_stage, "set_stage(model, 1) on a model with every parameter frozen", frozen, 1)

    for stage in (1, 2):
        everything = _model()
        everything.requires_grad_(True)
        _stage_case(set_stage, f"set_stage(model, {stage}) on a model with every parameter trainable", everything, stage)

    for stage in (0, 3, -1, 1.5):
        case = f"set_stage(model, {stage!r})"
        hint = "LLaVA has exactly two stages: raise ValueError(...) for anything but 1 and 2, before changing anything"
        # A state no stage produces (vision encoder on, projector off, language model half on), so that any
        # requires_grad switch made before the ValueError shows.
        odd = _model()
        odd.vision_encoder.requires_grad_(True)
        odd.projector.requires_grad_(False)
        for i, p in enumerate(odd.language_model.parameters()):
            p.requires_grad_(i % 2 == 0)
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
                     "check the stage first and raise before touching the model: a bad call must change nothing")
            continue
        except Exception as error:  # the wrong kind of error is the student's to see
            fail(case, "ValueError", f"{type(error).__name__}: {error}", hint)
        fail(case, "ValueError", "no exception", hint)

    full = _model(ModelConfig())
    counts = []
    for stage in (1, 2):
        with contextlib.redirect_stdout(io.StringIO()):
            call(f"set_stage(model, {stage}) on the full-size model", set_stage, full, stage)
        counts.append(sum(p.numel() for p in full.parameters() if p.requires_grad))
    total = sum(p.numel() for p in full.parameters())
    passed("set_stage", f"stage 1 trains {counts[0]:,} of {total:,} parameters (the projector), stage 2 {counts[1]:,} "
           "(projector + language model); the vision encoder never; other stages raise ValueError")
