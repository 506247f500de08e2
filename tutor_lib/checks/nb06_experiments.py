"""Checks for notebook 06_experiments: not written yet."""

__all__: list[str] = []
