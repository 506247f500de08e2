"""Every catalogued mistake is named by its own check, and its measured effect is quoted.

The catalogues (tutor_lib/checks/_mistakes.py) are how a failure gets a `matches:` line: each
entry is the reference with one mistake, so passing it to the exercise's check must fail with a
message that names it and gives its hint.
"""

from __future__ import annotations

import pytest
from check_assertions import assert_rejects

import tutor_lib.checks as checks
from tutor_lib.checks._mistakes import CATALOGUES
from tutor_lib.checks.effects import effect_line, table

pytestmark = pytest.mark.usefixtures("one_thread")

ENTRIES = [(exercise, mistake) for exercise, mistakes in CATALOGUES.items() for mistake in mistakes]
# The mistakes issue 17 asks to show the effect of: every one has a measured line.
REQUIRED_EFFECTS = ("pad_labels", "question_supervised", "end_missing", "lm_trainable_stage1", "logits_one_off")


def test_every_exercise_has_a_catalogue():
    exercises = {name[len("check_"):] for name in checks.__all__ if name.startswith("check_")}
    assert exercises <= set(CATALOGUES), sorted(exercises - set(CATALOGUES))


@pytest.mark.parametrize("exercise, mistake", ENTRIES, ids=[f"{e}: {m.name}" for e, m in ENTRIES])
def test_a_catalogued_mistake_is_named_by_its_check(exercise, mistake):
    check = getattr(checks, f"check_{exercise}")
    message = assert_rejects(check, mistake.fn, names=mistake.name,
                             parts=("case:", "expected:", "received:", "matches:", "hint:"))
    named = [m for m in CATALOGUES[exercise] if m.name in message]
    assert any(m.hint in message for m in named), message  # the hint is that of a named mistake


@pytest.mark.parametrize("key", REQUIRED_EFFECTS)
def test_the_recipe_mistakes_have_a_measured_effect(key):
    assert key in table().get("mistakes", {}), f"effects.json has no {key}: run tests/test_mistake_effects.py"
    line = effect_line(key)
    assert line.startswith("trained this way") and "seeds" in line and "%" in line
    assert any(m.effect == key for ms in CATALOGUES.values() for m in ms), f"no catalogue entry quotes {key}"


def test_every_effect_a_catalogue_quotes_is_measured():
    quoted = {m.effect for ms in CATALOGUES.values() for m in ms if m.effect}
    assert quoted <= set(table().get("mistakes", {})), sorted(quoted - set(table().get("mistakes", {})))
