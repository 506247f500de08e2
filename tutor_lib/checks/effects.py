"""What a mistake does to the model: the `effect:` line of a check's message.

effects.json holds, for the mistakes that matter most in LLaVA's recipe, what the model scored
when trained with that one mistake and with none, with the course's recipe, on the same seeds.
The figures were measured once with the real pipeline (stage-0 parts, stage 1, stage 2,
greedy answers); tests/test_mistake_effects.py remeasures and, with TUTOR_WRITE_EFFECTS=1,
rewrites the file. A check only reads it: it never trains.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

TABLE = Path(__file__).with_name("effects.json")


@functools.cache
def table() -> dict:
    """The stored measurements ({} when the file is missing: messages then have no effect line)."""
    try:
        return json.loads(TABLE.read_text())
    except FileNotFoundError:
        return {}


def _percent(values: list[float]) -> str:
    mean = sum(values) / len(values)
    low, high = min(values), max(values)
    spread = f" ({low:.0%}-{high:.0%})" if round(high * 100) != round(low * 100) else ""
    return f"{mean:.0%}{spread}"


def effect_line(key: str) -> str:
    """One sentence: trained with this mistake, what the model scored instead of the right figure."""
    data = table()
    wrong, right = data.get("mistakes", {}).get(key), data.get("correct")
    if not wrong or not right:
        return ""
    seeds = ", ".join(str(s) for s in data["seeds"])
    line = (f"trained this way ({data['recipe']}; seeds {seeds}), the model answers {_percent(wrong['iid'])} of "
            f"the IID test right instead of {_percent(right['iid'])}, and {_percent(wrong['heldout'])} of the "
            f"held-out scenes instead of {_percent(right['heldout'])}")
    if wrong.get("note"):
        line += f"; {wrong['note']}"
    if wrong.get("asked") and wrong["answer"] != wrong["truth"]:
        line += f'; {wrong["asked"]}, it says "{wrong["answer"]}" (right: "{wrong["truth"]}")'
    return line


# -- measuring (slow: trains the real pipeline; never called by a check) ------------------------------

RECIPE_TEXT = "the course's recipe"
SEEDS = (0, 1, 2)


def injections() -> dict[str, dict[int, tuple[str, object]]]:
    """effect key -> {stage: (the function of tutor_lib.train it replaces, the catalogue's wrong version)}."""
    from . import _recipe_mistakes as r

    return {
        "pad_labels": {2: ("build_instruction_batch", r.batch_labels_padded_with_pad)},
        "question_supervised": {2: ("build_instruction_batch", r.batch_question_supervised)},
        "end_missing": {2: ("build_instruction_batch", r.batch_without_end)},
        "lm_trainable_stage1": {1: ("set_stage", r.set_stage_lm_trainable_in_stage1)},
        # A student who slices one position off usually wrote both loops alike: both stages train this way.
        "logits_one_off": {1: ("next_token_loss", r.loss_logits_one_off), 2: ("next_token_loss", r.loss_logits_one_off)},
    }


NOTES = {  # what else the line says, from the after-stage-1 figures
    "lm_trainable_stage1": "after stage 1, the loss on held-out pretraining text is {text_loss} instead of "
                           "{right_text_loss}, and captions are {caption} right instead of {right_caption}",
}


def _swapped(replacements: dict[str, object]):
    import contextlib

    from .. import train

    @contextlib.contextmanager
    def swap():
        saved = {name: getattr(train, name) for name in replacements}
        try:
            for name, fn in replacements.items():
                setattr(train, name, fn)
            yield
        finally:
            for name, fn in saved.items():
                setattr(train, name, fn)

    return swap()


def _example(model, split) -> dict:
    """The first test question the model gets wrong (else the first), and what it says to it:
    {"asked": 'asked "where is it ?" about a red circle', "answer": "top-left top-left", "truth": "top-left"}."""
    from ..evaluate import answer_questions
    from ..vocab import decode

    answers = answer_questions(model, split)
    wrong = [i for i, a in enumerate(answers) if a != list(split[i]["answer_tokens"])]
    i = wrong[0] if wrong else 0
    sample = split[i]
    return {"asked": f'asked "{decode(sample["question_tokens"])}" about a {decode(sample["caption_tokens"])}',
            "answer": decode(answers[i], skip_special=False), "truth": decode(sample["answer_tokens"])}


def measure_seed(seed: int, keys: list[str], progress: bool = False, recipe=None) -> dict[str, dict]:
    """Train the pipeline once right and once per mistake on one seed -> {"correct" or key: figures}."""
    import copy

    from ..data import make_splits
    from ..evaluate import caption_accuracy, evaluate
    from ..experiments import ExperimentConfig, heldout_text
    from ..model import ModelConfig, MultimodalModel
    from ..pretrain import load_stage0, text_loss
    from ..runtime import seed_everything
    from ..train import RECIPE, train_stage1, train_stage2

    recipe = recipe or RECIPE
    cfg = ModelConfig()
    splits = make_splits(recipe.n_train, recipe.n_test, recipe.n_heldout, image_size=cfg.image_size, seed=seed)
    text = heldout_text(ExperimentConfig())
    plans = injections()

    def stage1(replace: dict) -> tuple:
        seed_everything(seed)
        model = MultimodalModel(cfg)
        load_stage0(model, 42, progress=False)
        with _swapped(replace):
            train_stage1(model, splits.train, recipe.stage1_epochs, lr=recipe.stage1_lr, seed=seed, progress=progress)
        after = {"caption": caption_accuracy(model, splits.test_iid), "text_loss": text_loss(model.language_model, text)}
        return model, after

    def stage2(model, replace: dict, after1: dict) -> dict:
        with _swapped(replace):
            train_stage2(model, splits.train, recipe.stage2_epochs, lr=recipe.stage2_lr, seed=seed + 1,
                         progress=progress)
        return {"iid": evaluate(model, splits.test_iid)["overall"],
                "heldout": evaluate(model, splits.test_heldout)["overall"],
                **_example(model, splits.test_iid), **after1}

    right_model, right_after1 = stage1({})
    results = {"correct": stage2(copy.deepcopy(right_model), {}, right_after1)}
    for key in keys:
        plan = {stage: dict([swap]) for stage, swap in plans[key].items()}
        if 1 in plan:
            model, after1 = stage1(plan[1])
        else:
            model, after1 = copy.deepcopy(right_model), right_after1
        results[key] = stage2(model, plan.get(2, {}), after1)
    return results


def summarise(per_seed: dict[int, dict[str, dict]]) -> dict:
    """Per-seed figures -> the effects.json layout: lists over seeds, and one wrong answer (the first seed's)."""
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]

    def gather(key: str) -> dict:
        out = {m: [per_seed[s][key][m] for s in seeds] for m in ("iid", "heldout", "caption", "text_loss")}
        out.update({k: first[key][k] for k in ("asked", "answer", "truth")})
        return out

    table = {"recipe": RECIPE_TEXT, "seeds": seeds, "correct": gather("correct"), "mistakes": {}}
    for key in first:
        if key == "correct":
            continue
        entry = gather(key)
        if key in NOTES:
            right = table["correct"]
            entry["note"] = NOTES[key].format(
                text_loss=_mean(entry["text_loss"], "{:.3f}"), right_text_loss=_mean(right["text_loss"], "{:.3f}"),
                caption=_percent(entry["caption"]), right_caption=_percent(right["caption"]))
        table["mistakes"][key] = entry
    return table


def _mean(values: list[float], fmt: str) -> str:
    return fmt.format(sum(values) / len(values))


def measure(seeds=SEEDS, keys: list[str] | None = None, progress: bool = False, recipe=None) -> dict:
    """Measure every effect on every seed (6 stage-2 and 3 stage-1 trainings per seed)."""
    keys = list(injections()) if keys is None else keys
    return summarise({seed: measure_seed(seed, keys, progress, recipe) for seed in seeds})


def write(data: dict) -> None:
    TABLE.write_text(json.dumps(data, indent=1) + "\n")
    table.cache_clear()


if __name__ == "__main__":  # python -m tutor_lib.checks.effects: remeasure and rewrite effects.json
    import sys

    from ..runtime import setup

    setup(seed=0)
    write(measure(progress="-q" not in sys.argv))
    print(f"wrote {TABLE}")
