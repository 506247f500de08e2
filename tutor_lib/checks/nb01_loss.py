"""Checks for notebook 01_loss: not written yet."""

__all__: list[str] = []
