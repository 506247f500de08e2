"""Checks for notebook 07_multiturn: not written yet."""

__all__: list[str] = []
