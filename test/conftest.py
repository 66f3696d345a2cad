"""Shared pytest fixtures and the environment every test runs in.

DDS traffic must stay on this machine's loopback: every test process gets
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a ``ROS_DOMAIN_ID`` of its own (the caller's, else
derived from the process id; under pytest-xdist one per worker: ros_domain.py), set here before any
test can import rclpy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from ros_domain import test_domain_id, xdist_worker

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if xdist_worker()[1] > 1:  # parallel workers: a domain each, whatever the caller exported
    os.environ["ROS_DOMAIN_ID"] = str(test_domain_id(47))
else:
    os.environ.setdefault("ROS_DOMAIN_ID", str(test_domain_id(47)))
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Idle OpenMP threads sleep instead of spinning: several test processes (node, player, DDP ranks)
# share 2 cores, and spinning torch threads slowed them 20x when they did.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def synth_dataroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SynthScenes dataset (nuScenes v1.0-mini layout), generated once per session.

    4 scenes x 6 samples at image scale 0.25, seed 7; ``synth_train`` / ``synth_val`` splits.
    Made once per test run: pytest-xdist workers share it (the first one generates it under a file
    lock, the others wait and read it). Tests only read it.
    """
    from filelock import FileLock

    from qdbev_core.data.synth import SynthConfig, generate_dataset

    root = tmp_path_factory.getbasetemp()
    if xdist_worker()[1] > 1:
        root = root.parent  # the run's basetemp, above each worker's own
    out = root / "synthscenes-shared"
    with FileLock(str(out) + ".lock"):
        if not (out / ".complete").is_file():
            shutil.rmtree(out, ignore_errors=True)
            generate_dataset(SynthConfig(out=out, scenes=4, samples=6, image_scale=0.25, seed=7, progress=False))
            (out / ".complete").touch()
    return out


@pytest.fixture(scope="session")
def confident_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small nano (64x176 input, 16x16 BEV, 30 queries) saved as safetensors + sidecar, with
    class biases raised so that it predicts boxes the evaluator can score (experiment tests)."""
    import torch

    from qdbev_core.checkpoint import save_weights
    from qdbev_core.model import BEVDetector

    torch.manual_seed(0)
    model = BEVDetector("nano", num_queries=30, image_size=(64, 176), bev_h=16, bev_w=16)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("heads.cls_branches.") and n.endswith("out.bias"):
                p.fill_(-1.0)
    path = tmp_path_factory.mktemp("tiny-model") / "tiny.safetensors"
    save_weights(model.state_dict(), path, {"config": model.cfg.to_dict(), "precision": "fp32"})
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realtime: a test of real-time ROS behaviour (rates, timeouts, latency) that "
        "`make test` runs after the parallel part, alone on the machine (tools/run_tests.sh)")
