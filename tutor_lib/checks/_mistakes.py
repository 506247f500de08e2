"""Mistake catalogues: a failure is diagnosed by matching, never by guessing.

Each exercise keeps a catalogue of the mistakes students make, each a small function: the
reference with that one mistake, a drop-in wrong answer to the exercise. When a case fails, the
check runs the catalogue on the same inputs and names every mistake whose output is exactly the
student's, shortest name first (the `matches:` line of the message). When none matches, the
message says only what was expected and where to look; it never names a mistake.

For the mistakes that matter most in LLaVA's recipe, `effect` names a line of effects.json: what
that mistake, trained with the course's recipe, did to the model (measured once, see effects.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._common import quiet


@dataclass(frozen=True)
class Mistake:
    name: str  # what the mistake is: "labels padded with PAD (0) instead of -100"
    fn: Callable  # the reference with this one mistake, with the exercise's signature
    hint: str  # what to do instead
    effect: str = ""  # its key in effects.json, when its effect on the trained model was measured


# exercise name -> its catalogue; tests/test_mistakes.py runs every entry through its check
CATALOGUES: dict[str, tuple[Mistake, ...]] = {}


def catalogue(exercise: str, *mistakes: Mistake) -> tuple[Mistake, ...]:
    """Register the catalogue of `exercise` (e.g. "token_nll") and return it."""
    names = [m.name for m in mistakes]
    if len(set(names)) != len(names):
        raise ValueError(f"{exercise}: two mistakes share a name")
    CATALOGUES[exercise] = tuple(mistakes)
    return CATALOGUES[exercise]


def matching(mistakes: Iterable[Mistake], outcome: Callable[[Callable], object], received: object,
             same: Callable[[object, object], bool]) -> list[Mistake]:
    """The mistakes whose outcome is the received one, shortest name first.

    outcome(fn) runs a function on the failing case's inputs (fresh copies, as the student's got);
    same(received, theirs) compares. A mistake that raises on these inputs does not match.
    """
    found = []
    for mistake in mistakes:
        try:
            with quiet():
                theirs = outcome(mistake.fn)
            if same(received, theirs):
                found.append(mistake)
        except Exception:  # noqa: BLE001 - a catalogue entry that cannot run here simply does not match
            continue
    return sorted(found, key=lambda m: len(m.name))
