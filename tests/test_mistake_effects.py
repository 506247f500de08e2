"""The effect lines: what each recipe mistake did to a model trained with it (tutor_lib/checks/effects.json).

The table is measured with the real pipeline and the course's recipe, which takes about half an
hour on a laptop CPU, so the full measurement only runs on request:

    TUTOR_MEASURE_EFFECTS=1 python3 tasks.py test tests/test_mistake_effects.py      # compare with the table
    TUTOR_MEASURE_EFFECTS=1 TUTOR_WRITE_EFFECTS=1 python3 tasks.py test tests/...     # rewrite the table

The other tests check the harness on the quick recipe, and that the stored table says what the
lines quote.
"""

from __future__ import annotations

import os

import pytest

from tutor_lib import train
from tutor_lib.checks import effects
from tutor_lib.train import RECIPE


def test_the_stored_table_covers_every_injection_and_seed():
    data = effects.table()
    assert data["recipe"] == effects.RECIPE_TEXT and data["seeds"] == list(effects.SEEDS)
    assert set(data["mistakes"]) == set(effects.injections())
    for entry in (data["correct"], *data["mistakes"].values()):
        for metric in ("iid", "heldout", "caption"):
            assert len(entry[metric]) == len(effects.SEEDS) and all(0 <= v <= 1 for v in entry[metric])


def test_a_line_quotes_the_stored_figures(monkeypatch):
    data = {"recipe": "the recipe", "seeds": [0, 1],
            "correct": {"iid": [1.0, 0.98], "heldout": [0.9, 0.9]},
            "mistakes": {"k": {"iid": [0.5, 0.25], "heldout": [0.0, 0.0], "note": "n",
                               "asked": 'asked "what color ?"', "answer": "red red", "truth": "red"},
                         "same": {"iid": [1.0, 0.98], "heldout": [0.9, 0.9],
                                  "asked": 'asked "what color ?"', "answer": "red", "truth": "red"}}}
    monkeypatch.setattr(effects, "table", lambda: data)
    line = effects.effect_line("k")
    assert line.startswith("trained this way (the recipe; seeds 0, 1)")
    assert "38% (25%-50%) of the IID test right instead of 99% (98%-100%)" in line
    assert "0% of the held-out scenes instead of 90%" in line
    assert line.endswith('; n; asked "what color ?", it says "red red" (right: "red")')
    assert "asked" not in effects.effect_line("same")  # no example when every answer was right
    assert effects.effect_line("unmeasured") == ""


@pytest.mark.slow
def test_the_harness_swaps_the_mistake_in_and_puts_tutor_lib_back(one_thread):
    originals = {name: getattr(train, name) for name in ("build_instruction_batch", "set_stage", "next_token_loss")}
    result = effects.measure(seeds=(0,), recipe=RECIPE.quick())
    assert {name: getattr(train, name) for name in originals} == originals
    assert set(result["mistakes"]) == set(effects.injections())
    right, off = result["correct"], result["mistakes"]["logits_one_off"]
    # Trained to copy its input, the model never answers: even 2 + 3 epochs show it.
    assert off["iid"] == [0.0] and right["iid"][0] > 0.2
    # Only stage 1 differs for the stage-1 mistake; the stage-2 mistakes share the right stage 1.
    assert result["mistakes"]["pad_labels"]["text_loss"] == right["text_loss"]
    assert result["mistakes"]["lm_trainable_stage1"]["text_loss"] != right["text_loss"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TUTOR_MEASURE_EFFECTS"), reason="set TUTOR_MEASURE_EFFECTS=1 (about 30 min)")
def test_the_table_is_what_the_pipeline_measures(one_thread):
    measured = effects.measure()
    if os.environ.get("TUTOR_WRITE_EFFECTS"):
        effects.write(measured)
    stored = effects.table()
    for key in ("correct", *stored["mistakes"]):
        got = measured["correct"] if key == "correct" else measured["mistakes"][key]
        want = stored["correct"] if key == "correct" else stored["mistakes"][key]
        for metric in ("iid", "heldout", "caption"):
            assert got[metric] == pytest.approx(want[metric], abs=0.05), (key, metric)
