"""``NodeStartupError``: what stops ``qdbev_node`` at startup with one FATAL line."""

from __future__ import annotations

__all__ = ["NodeStartupError"]


class NodeStartupError(RuntimeError):
    """A fatal configuration problem (bad parameter, model or calibration file)."""
