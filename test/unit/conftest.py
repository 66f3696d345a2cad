"""Fixtures shared by unit-test modules: one tiny fp32 teacher and one standard QAT run from it, made
once per session instead of once per test (each QAT run pays the student build, calibration and
packing before its few steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_QAT = {"num_queries": 30, "image_size": (64, 176), "bev_h": 16, "bev_w": 16}
"""The small nano the QAT tests train (16x16 BEV, 64x176 images, 30 queries)."""


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``TINY_QAT`` nano (seed 0) saved as an fp32 safetensors + sidecar: the QAT teacher."""
    import torch

    from qdbev_core.checkpoint import save_weights
    from qdbev_core.model import BEVDetector

    torch.manual_seed(0)
    model = BEVDetector("nano", **TINY_QAT)
    path = tmp_path_factory.mktemp("teacher") / "fp.safetensors"
    save_weights(model.state_dict(), path, {"config": model.cfg.to_dict(), "precision": "fp32"})
    return path


def _standard_qat_config(root: Path, out: Path, teacher: Path, **kw):
    """5 steps of standard QAT (W4A6, output quantizers: the default recipe) of ``teacher`` on synth_train."""
    from qdbev_core.train.config import TrainConfig
    from qdbev_core.train.qat import QatConfig

    base = dict(model="nano", dataroot=root, split="synth_train", out=out, steps=5, batch_size=1, lr=2e-4,
                warmup_steps=1, ckpt_every=100, log_every=1, eval_split=None, num_workers=0, threads=2,
                model_overrides=dict(TINY_QAT), qat=QatConfig(teacher=str(teacher), mode="standard", calib_batches=1))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def standard_qat_config():
    """``(dataroot, out, teacher, **overrides) -> TrainConfig`` of the shared standard QAT run."""
    return _standard_qat_config


@pytest.fixture(scope="session")
def standard_qat_run(synth_dataroot: Path, tiny_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of one uninterrupted ``standard_qat_config`` run (read-only for its users):
    test_qat_resume compares an interrupted + resumed run with it, test_qat_train checks what standard
    mode quantizes."""
    from qdbev_core.train.trainer import train

    out = tmp_path_factory.mktemp("qat-standard") / "run"
    train(_standard_qat_config(synth_dataroot, out, tiny_teacher), progress=False)
    return out
