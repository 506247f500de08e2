"""Checks for notebook 02_data: not written yet."""

__all__: list[str] = []
