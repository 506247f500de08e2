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
    if wrong.get("example") and wrong["example"] != right.get("example"):
        line += f"; e.g. {wrong['example']} (right: {right['example']!r})"
    return line
