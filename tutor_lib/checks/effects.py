"""What a mistake does to the model: the `effect:` line of a check's message.

effects.json holds, for the mistakes that matter most in LLaVA's recipe, what the model scored
when trained with that one mistake and with none, with the course's recipe, on the same seeds.
The figures were measured once with the real pipeline (stage-0 parts, stage 1, stage 2,
greedy answers); tests/test_mistake_effects.py remeasures and, with TUTOR_WRITE_EFFECTS=1,
rewrites the file. A check only reads it: it never trains.
"""

from __future__ import annotations

import contextlib
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


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _percent(values: list[float]) -> str:
    low, high = min(values), max(values)
    spread = f" ({low:.0%}-{high:.0%})" if round(high * 100) != round(low * 100) else ""
    return f"{_mean(values):.0%}{spread}"


def _loss(values: list[float]) -> str:
    low, high = min(values), max(values)
    spread = f" ({low:.3f}-{high:.3f})" if f"{low:.3f}" != f"{high:.3f}" else ""
    return f"{_mean(values):.3f}{spread}"


# The figures a line may add after the answers, each only where the mistake moved it (mean over the seeds
# by more than 2 points, or the text loss by more than 10 %): label, key, format, threshold.
_EXTRAS = (
    ("captions right after stage 1", "caption", _percent, 0.02),
    ("captions right after stage 2", "caption2", _percent, 0.02),
    ("loss on held-out pretraining text after stage 1", "text_loss", _loss, None),
)


def _moved(wrong: list[float], right: list[float], threshold: float | None) -> bool:
    if threshold is None:  # relative: a loss
        return abs(_mean(wrong) - _mean(right)) > 0.1 * abs(_mean(right))
    return abs(_mean(wrong) - _mean(right)) > threshold


def effect_line(key: str) -> str:
    """One sentence: what a model trained with this mistake scored, next to the same recipe without it."""
    data = table()
    wrong, right = data.get("mistakes", {}).get(key), data.get("correct")
    if not wrong or not right:
        return ""
    seeds = ("seed " if len(data["seeds"]) == 1 else "seeds ") + ", ".join(str(s) for s in data["seeds"])
    line = (f"trained this way ({data['recipe']}; {seeds}), the model answers {_percent(wrong['iid'])} of "
            f"the IID test right ({_percent(right['iid'])} without the mistake) and {_percent(wrong['heldout'])} "
            f"of the held-out scenes ({_percent(right['heldout'])})")
    for label, name, shown, threshold in _EXTRAS:
        if name in wrong and name in right and _moved(wrong[name], right[name], threshold):
            line += f"; {label}: {shown(wrong[name])} ({shown(right[name])})"
    if wrong.get("asked") and wrong["answer"] != wrong["truth"]:
        said = f'"{wrong["answer"]}"' if wrong["answer"] else "nothing (<end> first)"
        line += f'; {wrong["asked"]}, it says {said} (right: "{wrong["truth"]}")'
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


@contextlib.contextmanager
def _swapped(replacements: dict[str, object]):
    """While it runs, tutor_lib.train's functions named in `replacements` are the catalogue's wrong ones."""
    from .. import train

    saved = {name: getattr(train, name) for name in replacements}
    try:
        for name, fn in replacements.items():
            setattr(train, name, fn)
        yield
    finally:
        for name, fn in saved.items():
            setattr(train, name, fn)


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
    from ..model import ModelConfig, MultimodalModel
    from ..pretrain import load_stage0, make_text_corpus, text_loss
    from ..runtime import seed_everything
    from ..train import RECIPE, train_stage1, train_stage2

    recipe = recipe or RECIPE
    cfg = ModelConfig()
    splits = make_splits(recipe.n_train, recipe.n_test, recipe.n_heldout, image_size=cfg.image_size, seed=seed)
    # Pretraining-style text the LM never trained on (stage 0 trained on seed 42's), as notebook 07 uses.
    text = make_text_corpus(256, image_size=cfg.image_size, patch_size=cfg.patch_size, seed=10_000 + 42)
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
                "caption2": caption_accuracy(model, splits.test_iid),
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
        out = {m: [per_seed[s][key][m] for s in seeds] for m in ("iid", "heldout", "caption", "caption2", "text_loss")}
        out.update({k: first[key][k] for k in ("asked", "answer", "truth")})
        return out

    table = {"recipe": RECIPE_TEXT, "seeds": seeds, "correct": gather("correct"), "mistakes": {}}
    for key in first:
        if key != "correct":
            table["mistakes"][key] = gather(key)
    return table


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
