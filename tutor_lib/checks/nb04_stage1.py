"""Checks for notebook 04_stage1: not written yet."""

__all__: list[str] = []
