"""Checks for notebook 03_model: not written yet."""

__all__: list[str] = []
