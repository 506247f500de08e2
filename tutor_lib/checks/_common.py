"""What every check shares: failure messages, quiet calls, and guards.

A check must not trust anything the student's notebook can rebind: it compares through the
torch functions bound in trusted.py when tutor_lib.checks is first imported (the setup cell of
every notebook), so `torch.equal = lambda *a: True` in a later cell changes nothing;
`verify_integrity()` also notices such a rebinding and says so.

A failed check raises CheckError, which IPython shows as its four-line message alone (case,
expected, received, hint): no traceback through this file, in JupyterLab, in nbgrader's
Validate and in the grader's feedback.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import textwrap
import types
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch

from .effects import effect_line
from .trusted import WATCHED, allclose, cross_entropy, equal, isfinite, log_softmax  # noqa: F401 (re-exported)

_ORIGINAL_CHECKS: dict[str, Callable] = {}


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread: a check's tiny tensors gain nothing from more, and on a busy machine
    (a shared server, a class graded in parallel) extra threads made the training checks 5-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def register(fn: Callable) -> Callable:
    """Make fn a check: it runs on one thread, and is recorded as the original so a rebinding can be detected."""

    @functools.wraps(fn)
    def check(*args, **kwargs):
        with one_thread():
            return fn(*args, **kwargs)

    _ORIGINAL_CHECKS[fn.__name__] = check
    return check


_WIDTH = 84  # nbgrader's Validate on the command line cuts lines at 87 characters, its 4-space indent included
_RED, _RESET = "\x1b[0;31m", "\x1b[0m"


class CheckError(AssertionError):
    """A check failed: the message says what was tested, what was expected, what came back, and a hint."""

    @property
    def _render_traceback_(self) -> Callable[[], list[str]]:
        """IPython shows the lines this returns instead of a traceback: the message is all the student needs.

        Set TUTOR_CHECK_TRACEBACK=1 (e.g. when debugging a check) to get IPython's full traceback back.
        """
        if os.environ.get("TUTOR_CHECK_TRACEBACK"):
            raise AttributeError("_render_traceback_")  # hasattr() is then False and IPython formats the traceback
        return self.render

    def render(self) -> list[str]:
        """The message as lines of at most 84 characters, under a red `CheckError` header."""
        lines = [f"{_RED}CheckError{_RESET}"]
        for line in str(self).strip("\n").splitlines():
            lines += textwrap.wrap(line, _WIDTH, subsequent_indent=" " * 12, break_on_hyphens=False) or [""]
        return lines


def fail(case: str, expected: object, received: object, hint: str = "", matches: Sequence = ()) -> None:
    """Raise CheckError with the standard message (never chained to the error being handled).

    case / expected / received / hint; with `matches` (catalogue mistakes whose output is exactly
    the received one, see _mistakes.py) also a `matches:` line naming each, the hint of the first
    instead of `hint`, and an `effect:` line with what that mistake did to a trained model.
    """
    message = f"\n  case:     {case}\n  expected: {expected}\n  received: {received}"
    effect = ""
    if matches:
        message += "\n  matches:  " + "\n            ".join(m.name for m in matches)
        hint = matches[0].hint
        effect = next((line for m in matches if m.effect and (line := effect_line(m.effect))), "")
    if hint:
        message += f"\n  hint:     {hint}"
    if effect:
        message += f"\n  effect:   {effect}"
    raise CheckError(message) from None


class Raised(str):
    """What a call raised, as 'TypeName: message': two outcomes that raised match when their texts are equal."""


def raised(error: BaseException) -> Raised:
    return Raised(f"{type(error).__name__}: {error}")


def passed(name: str, detail: str) -> None:
    """The one line a check prints when everything passed."""
    print(f"✓ {name}: {detail}")


def short(value: object, limit: int = 160) -> str:
    """A readable, bounded repr of a value for failure messages."""
    if isinstance(value, torch.Tensor):
        text = f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
        if value.numel() <= 12:
            text += f": {value.detach().cpu().tolist()}"
        return text
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def quiet():
    """Swallow stderr and warnings raised inside student code (nbgrader scores a cell 0 for any stderr)."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def call(case: str, fn: Callable, *args, hint: str = "", **kwargs):
    """Call student code quietly; an exception becomes a failure message naming the case."""
    try:
        with quiet():
            return fn(*args, **kwargs)
    except CheckError:
        raise
    except NotImplementedError:  # the release's stub: say so rather than show an empty message
        fail(case, "no exception", "NotImplementedError: the function is still the stub; replace "
             "`raise NotImplementedError()` with your code", hint)
    except Exception as error:  # any error in student code is the student's to see
        fail(case, "no exception", raised(error), hint)


def expect_tensor(case: str, value: object, shape: tuple | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fail unless value is a tensor of the given shape and dtype."""
    if not isinstance(value, torch.Tensor):
        fail(case, "a torch.Tensor", f"{type(value).__name__}: {short(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        fail(case, f"shape {tuple(shape)}", f"shape {tuple(value.shape)}")
    if dtype is not None and value.dtype != dtype:
        fail(case, f"dtype {dtype}", f"dtype {value.dtype}")
    return value


def expect_close(case: str, received: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5,
                 rtol: float = 1e-5, hint: str = "") -> None:
    """Fail unless the tensors have the same shape, are finite where expected is, and agree within tolerance."""
    expect_tensor(case, received, tuple(expected.shape))
    got, want = received.detach().double().cpu(), expected.detach().double().cpu()  # compare in float64
    # The reference is often computed in float64; shown as such next to a float32 result it reads as if the
    # dtype were the problem. Show it in the student's floating dtype: only the values are being compared.
    shown = expected.detach().cpu()
    if shown.is_floating_point() and received.is_floating_point():
        shown = shown.to(received.dtype)
    if not bool(isfinite(got).all()) and bool(isfinite(want).all()):
        fail(case, short(shown), f"{short(received)} (contains inf or nan)", hint)
    if not allclose(got, want, atol=atol, rtol=rtol):
        worst = (got - want).abs().max().item()
        fail(case, short(shown), f"{short(received)} (largest difference {worst:.3g}, tolerance {atol:g})", hint)


# -- guards used by the hidden tests ---------------------------------------------------------------

def verify_integrity() -> None:
    """Fail if a trusted torch function or a check_* function of tutor_lib.checks was replaced."""
    import tutor_lib.checks as checks

    for label, (owner, attr, original) in WATCHED.items():
        if getattr(owner, attr) is not original:
            fail("integrity", f"{label} unchanged", f"{label} was replaced in this notebook",
                 "grading needs the real function; remove the line that reassigns it and rerun")
    for name, original in _ORIGINAL_CHECKS.items():
        if getattr(checks, name, None) is not original:
            fail("integrity", f"tutor_lib.checks.{name} unchanged", "it was replaced in this notebook",
                 "the checks must be the course's own; remove the line that reassigns it and rerun")


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions_of(obj: object) -> list[types.FunctionType]:
    if isinstance(obj, types.FunctionType):
        return [obj]
    if isinstance(obj, type):
        found = []
        for klass in obj.__mro__:
            if klass.__module__.startswith(("torch", "builtins")):
                continue
            for value in vars(klass).values():
                value = getattr(value, "__func__", value)
                if isinstance(value, types.FunctionType):
                    found.append(value)
        return found
    return []


def reference_use(obj: object, forbidden: Iterable[object]) -> str | None:
    """Describe how `obj` is, subclasses, or calls one of `forbidden` (or the tutor_lib package), else None."""
    forbidden = list(forbidden)
    module = getattr(obj, "__module__", "") or ""
    if any(obj is f for f in forbidden) or module.startswith("tutor_lib"):
        return f"it is tutor_lib's own {getattr(obj, '__qualname__', obj)!r}"
    if isinstance(obj, type) and any(base.__module__.startswith("tutor_lib") for base in obj.__mro__[1:]):
        return "it subclasses a tutor_lib class"
    forbidden_names = {getattr(f, "__name__", None) for f in forbidden} - {None}
    seen: set[int] = set()
    todo = _functions_of(obj)
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        names = {name for code in _code_objects(fn.__code__) for name in code.co_names}
        for name in names:
            value = fn.__globals__.get(name)
            if value is None:
                continue
            if any(value is f for f in forbidden):
                return f"it calls the reference {name!r}"
            # tutor_lib.train.train_stage1(...) or T.train_stage1(...) through a module alias
            if isinstance(value, types.ModuleType) and value.__name__.startswith("tutor_lib") \
                    and names & forbidden_names:
                return f"it calls {sorted(names & forbidden_names)[0]!r} from the module {value.__name__!r}"
            # Follow the student's own helper functions, defined in the same notebook.
            if isinstance(value, types.FunctionType) and value.__module__ == module:
                todo.append(value)
            elif isinstance(value, type) and value.__module__ == module:
                todo.extend(_functions_of(value))
    return None


def not_reference(name: str, obj: object, forbidden: Iterable[object]) -> None:
    """Fail if the student's `obj` is, or merely calls, the reference implementation."""
    how = reference_use(obj, forbidden)
    if how:
        fail(f"{name} is your own implementation", "code written in this notebook", how,
             f"write {name} yourself; tutor_lib's version is there to compare against, not to submit")
