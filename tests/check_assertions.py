"""Assertions shared by the tests of the notebook checks: a check rejects a mistake, or accepts a correct variant."""

from __future__ import annotations

import pytest

from tutor_lib.checks import CheckError

ALL_PARTS = ("case:", "expected:", "received:", "hint:")


def assert_rejects(check, fn, *fragments, parts=ALL_PARTS, match=None, capsys=None) -> str:
    """Assert check(fn) raises CheckError (matching match) whose message holds every part and fragment; return it."""
    with pytest.raises(CheckError, match=match) as info:
        check(fn)
    message = str(info.value)
    for part in parts:
        assert part in message, message
    for fragment in fragments:
        assert fragment in message, message
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
