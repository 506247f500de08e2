"""Assertions shared by the tests of the notebook checks: a check rejects a mistake, or accepts a correct variant.

Every wrong variant a test tries says which catalogue mistake its check must name (`names=`), or
`names=None` when it matches none and the message must name none. With TUTOR_FEEDBACK_AUDIT=FILE
each rejection is also appended to FILE as a JSON line, for counting what the messages name.
"""

from __future__ import annotations

import json
import os

import pytest

from tutor_lib.checks import CheckError

ALL_PARTS = ("case:", "expected:", "received:", "hint:")
_UNCLASSIFIED = object()


def named_mistakes(message: str) -> list[str]:
    """The mistakes a failure message names on its `matches:` line (one per line), in order; [] if none."""
    names, inside = [], False
    for line in message.splitlines():
        if line.startswith("  matches:  "):
            inside = True
            names.append(line[len("  matches:  "):].strip())
        elif inside and line.startswith(" " * 12):  # the next mistake (a wrapped line is wrapped on render only)
            names.append(line.strip())
        else:
            inside = False
    return names


def _audit(check, fn, message: str, names) -> None:
    path = os.environ.get("TUTOR_FEEDBACK_AUDIT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"check": getattr(check, "__name__", str(check)),
                                  "variant": getattr(fn, "__qualname__", repr(fn)), "expected": names,
                                  "named": named_mistakes(message), "message": message}) + "\n")


def assert_rejects(check, fn, *fragments, names=_UNCLASSIFIED, parts=ALL_PARTS, match=None, capsys=None) -> str:
    """Assert check(fn) raises CheckError (matching match) whose message holds every part and fragment; return it.

    names: the catalogue mistake (a name, or a tuple of names) that fn is, which the message must name
    among its matches, or None: fn is no catalogued mistake, and the message names none.
    """
    if names is _UNCLASSIFIED:
        raise TypeError("say which catalogue mistake this variant is (names='...') or that it is none (names=None)")
    with pytest.raises(CheckError, match=match) as info:
        check(fn)
    message = str(info.value)
    _audit(check, fn, message, names)
    for part in parts:
        assert part in message, message
    for fragment in fragments:
        assert fragment in message, message
    named = named_mistakes(message)
    if names is None:
        assert named == [], f"names a mistake the variant is not:\n{message}"
    else:
        wanted = [names] if isinstance(names, str) else list(names)
        assert set(wanted) <= set(named), f"does not name {wanted}:\n{message}"
    if capsys is not None:
        assert capsys.readouterr().err == ""
    return message


def assert_accepts(check, fn, capsys, name, *fragments, only_output=True) -> str:
    """Assert check(fn) prints a line starting "✓ <name>" holding every fragment (by default its only output); return stdout."""
    check(fn)
    out = capsys.readouterr()
    assert out.out.startswith(f"✓ {name}"), out.out
    for fragment in fragments:
        assert fragment in out.out, out.out
    if only_output:
        assert out.out.count("\n") == 1, out.out
        assert out.err == ""
    return out.out
