"""The effect lines: what each recipe mistake did to a model trained with it (tutor_lib/checks/effects.json).

The table is measured with the real pipeline and the course's recipe: 3 seeds x (3 stage-1 and 6
stage-2 trainings), about 18 minutes a seed on one CPU thread here, so it only runs on request:

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
        for metric in ("iid", "heldout", "caption", "caption2"):
            assert len(entry[metric]) == len(effects.SEEDS) and all(0 <= v <= 1 for v in entry[metric])


def test_a_line_quotes_the_stored_figures_and_only_those_the_mistake_moved(monkeypatch):
    right = {"iid": [1.0, 0.98], "heldout": [0.9, 0.9], "caption": [1.0, 1.0], "caption2": [1.0, 1.0],
             "text_loss": [0.008, 0.008]}
    data = {"recipe": "the recipe", "seeds": [0, 1], "correct": right,
            "mistakes": {"k": {**right, "iid": [0.5, 0.25], "heldout": [0.0, 0.0], "caption2": [0.0, 0.1],
                               "asked": 'asked "what color ?"', "answer": "red red", "truth": "red"},
                         "lm": {**right, "text_loss": [0.05, 0.07], "caption": [0.99, 0.99],
                                "asked": 'asked "what color ?"', "answer": "red", "truth": "red"},
                         "mute": {**right, "iid": [0.0, 0.0], "asked": 'asked "what color ?"', "answer": "",
                                  "truth": "red"}}}
    monkeypatch.setattr(effects, "table", lambda: data)
    line = effects.effect_line("k")
    assert line.startswith("trained this way (the recipe; seeds 0, 1), the model answers 38% (25%-50%) of the IID "
                           "test right (99% (98%-100%) without the mistake) and 0% of the held-out scenes (90%)")
    assert "captions right after stage 2: 5% (0%-10%) (100%)" in line
    assert "after stage 1" not in line  # neither the captions nor the text loss moved
    assert line.endswith('; asked "what color ?", it says "red red" (right: "red")')
    lm = effects.effect_line("lm")
    assert "loss on held-out pretraining text after stage 1: 0.060 (0.050-0.070) (0.008)" in lm
    assert "captions" not in lm and "asked" not in lm  # 1 point is no change; every answer was right
    assert 'it says nothing (<end> first) (right: "red")' in effects.effect_line("mute")
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
@pytest.mark.skipif(not os.environ.get("TUTOR_MEASURE_EFFECTS"),
                    reason="set TUTOR_MEASURE_EFFECTS=1 (about an hour on one CPU thread)")
def test_the_table_is_what_the_pipeline_measures(one_thread):
    measured = effects.measure()
    if os.environ.get("TUTOR_WRITE_EFFECTS"):
        effects.write(measured)
    stored = effects.table()
    for key in ("correct", *stored["mistakes"]):
        got = measured["correct"] if key == "correct" else measured["mistakes"][key]
        want = stored["correct"] if key == "correct" else stored["mistakes"][key]
        for metric in ("iid", "heldout", "caption", "caption2"):
            assert got[metric] == pytest.approx(want[metric], abs=0.05), (key, metric)
        assert got["text_loss"] == pytest.approx(want["text_loss"], rel=0.1), key
