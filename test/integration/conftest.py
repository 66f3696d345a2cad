"""Integration tests: one private ``backend="auto"`` cache for the whole test session.

The node's default backend is ``auto`` (``config/qdbev.yaml`` and the built-in default), which
times a model's execution paths the first time it meets that model on a machine and caches the
choice under ``$QDBEV_AUTO_CACHE`` (``qdbev_core.engine.auto_select``). This conftest points
``QDBEV_AUTO_CACHE`` at a temporary folder of the session before the first test here runs, so

- every process the session starts inherits it (``test_node_e2e.ros_env`` copies ``os.environ``):
  each model is timed once per session, by the first node (or in-process engine) that loads it,
  and every later start reads the choice and builds only that path;
- the node and the in-process offline replay of ``test_live_vs_replay.py`` read the same file,
  so both run the same path (same thread count: ``OMP_NUM_THREADS=2`` on both sides);
- the user's own cache (``~/.cache/qdbev/auto``) is neither read nor written, so a choice timed
  on a loaded machine during a test run never leaks into real use, and a stale one never decides
  a test.

Tests that need one backend name it (``-p backend:=torch`` / ``backend="onnxruntime"``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

AUTO_CACHE_ENV = "QDBEV_AUTO_CACHE"


@pytest.fixture(scope="session", autouse=True)
def session_auto_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$QDBEV_AUTO_CACHE`` = a folder of this session (restored afterwards)."""
    folder = tmp_path_factory.mktemp("qdbev-auto-cache")
    saved = os.environ.get(AUTO_CACHE_ENV)
    os.environ[AUTO_CACHE_ENV] = str(folder)
    try:
        yield folder
    finally:
        if saved is None:
            os.environ.pop(AUTO_CACHE_ENV, None)
        else:
            os.environ[AUTO_CACHE_ENV] = saved
