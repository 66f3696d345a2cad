"""QAT with the default recipe (output quantizers included) resumes exactly from its checkpoint:
an interrupted run, rerun, logs the same losses as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qdbev_core.checkpoint import save_weights
from qdbev_core.model import BEVDetector
from qdbev_core.models_manifest import load_model
from qdbev_core.quant import out_quantizers
from qdbev_core.train.config import TrainConfig
from qdbev_core.train.qat import QatConfig
from qdbev_core.train.trainer import read_metrics, train

TINY = {"num_queries": 30, "image_size": (64, 176), "bev_h": 16, "bev_w": 16}


def _cfg(root: Path, out: Path, teacher: Path, **kw) -> TrainConfig:
    base = dict(model="nano", dataroot=root, split="synth_train", out=out, steps=5, batch_size=1, lr=2e-4,
                warmup_steps=1, ckpt_every=100, log_every=1, eval_split=None, num_workers=0, threads=2,
                model_overrides=dict(TINY), qat=QatConfig(teacher=str(teacher), mode="standard", calib_batches=1))
    base.update(kw)
    return TrainConfig(**base)


def _losses(out: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in read_metrics(out / "metrics.csv") if r.get("loss")}


def test_standard_qat_with_output_quantizers_resumes_exactly(synth_dataroot: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = BEVDetector("nano", **TINY)
    teacher = tmp_path / "teacher.safetensors"
    save_weights(model.state_dict(), teacher, {"config": model.cfg.to_dict(), "precision": "fp32"})
    full, part = tmp_path / "full", tmp_path / "part"
    train(_cfg(synth_dataroot, full, teacher), progress=False)
    train(_cfg(synth_dataroot, part, teacher), progress=False, stop_at=2)  # interrupted after step 2
    train(_cfg(synth_dataroot, part, teacher), progress=False)  # the same command resumes at 2
    a, b = _losses(full), _losses(part)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5]
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    m1, m2 = load_model(full / "model.safetensors"), load_model(part / "model.safetensors")
    p1, p2 = dict(out_quantizers(m1)), dict(out_quantizers(m2))
    assert p1 and p1.keys() == p2.keys()
    for n in p1:  # learned output steps / zero points, restored and trained on identically
        assert torch.allclose(p1[n].step, p2[n].step, rtol=1e-5) and torch.equal(p1[n].zero_point.round(), p2[n].zero_point.round()), n
