"""Where exported ONNX graphs and TensorRT plans are cached (``load_engine``, ``TensorRTEngine``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..models_manifest import models_dir


def engine_cache_dir() -> Path:
    """``$QDBEV_ENGINE_CACHE``, else ``models/engines/`` when writable, else ``$XDG_CACHE_HOME/qdbev/engines``."""
    env = os.environ.get("QDBEV_ENGINE_CACHE")
    if env:
        return Path(env)
    d = models_dir() / "engines"
    probe = d if d.exists() else d.parent
    if probe.exists() and os.access(probe, os.W_OK):
        return d
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return xdg / "qdbev" / "engines"
