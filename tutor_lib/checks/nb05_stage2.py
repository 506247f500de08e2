"""Checks for notebook 05_stage2: not written yet."""

__all__: list[str] = []
