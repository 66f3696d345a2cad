"""`qdbev qat` modes on a tiny nano: standard, progressive (stages switch on), QD-BEV (VGD terms),
the packed low-bit file at the end, and loading both results by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qdbev_core.checkpoint import save_weights
from qdbev_core.model import BEVDetector
from qdbev_core.models_manifest import load_model
from qdbev_core.quant import enabled_layers
from qdbev_core.train.config import TrainConfig
from qdbev_core.train.qat import QatConfig
from qdbev_core.train.trainer import read_metrics, train

TINY = {"num_queries": 30, "image_size": (64, 176), "bev_h": 16, "bev_w": 16}


@pytest.fixture
def teacher(tiny_teacher: Path) -> Path:
    """The session's untrained TINY nano (test/unit/conftest.py), the teacher of every run here."""
    return tiny_teacher


def _run(root: Path, out: Path, qat: QatConfig, steps: int = 4) -> list[dict]:
    cfg = TrainConfig(model="nano", dataroot=root, split="synth_train", out=out, steps=steps, batch_size=1, lr=2e-4,
                      warmup_steps=1, ckpt_every=100, log_every=1, eval_split=None, num_workers=0, threads=2,
                      model_overrides=dict(TINY), qat=qat)
    train(cfg, progress=False)
    return read_metrics(out / "metrics.csv")


def test_qdbev_mode_adds_vgd_and_writes_a_packed_model(synth_dataroot: Path, teacher: Path, tmp_path: Path) -> None:
    rows = _run(synth_dataroot, tmp_path / "qdbev", QatConfig(teacher=str(teacher), mode="qdbev", calib_batches=2))
    logged = [r for r in rows if r.get("loss")]
    assert len(logged) == 4
    for r in logged:
        assert float(r["vgd_img"]) > 0 and float(r["vgd_bev"]) > 0 and float(r["vgd"]) > 0
        assert torch.isfinite(torch.tensor(float(r["loss"])))
    fake = load_model(tmp_path / "qdbev" / "model.safetensors")
    packed = load_model(tmp_path / "qdbev" / "model.packed.safetensors")
    assert (tmp_path / "qdbev" / "model.packed.safetensors").stat().st_size < 0.25 * teacher.stat().st_size
    torch.manual_seed(1)
    img = torch.randn(1, 6, 3, 64, 176)
    from qdbev_core.data.rig import rig_arrays, scaled_intrinsics

    k, t = rig_arrays(1.0)
    k = torch.tensor(np.stack([scaled_intrinsics(ki, 176 / 1600, 64 / 900) for ki in k]), dtype=torch.float32)[None]
    t = torch.tensor(t, dtype=torch.float32)[None]
    with torch.no_grad():
        a, b = fake(img, k, t), packed(img, k, t)
    # the packed integers + scales rebuild exactly the fake-quant model that was saved
    for key in ("cls_logits", "boxes", "bev"):
        assert torch.equal(a[key], b[key]), key


def test_progressive_mode_switches_stages_on_in_order(synth_dataroot: Path, teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "prog"
    rows = _run(synth_dataroot, out, QatConfig(teacher=str(teacher), mode="progressive", calib_batches=1), steps=8)
    stages = [(int(r["step"]), int(r["qat_stage"])) for r in rows if r.get("qat_stage")]
    assert stages == [(2, 1), (4, 2), (6, 3)]
    assert not any(r.get("vgd") for r in rows)
    # each stage gets a warm-up + decay of its own: the learning rate rises again when a stage's
    # quantizers switch on (one cosine over the run would keep falling), back to the peak lr
    lr = {int(r["step"]): float(r["lr"]) for r in rows if r.get("lr")}  # lr after step k = lr of step k + 1
    for s, _ in stages:
        assert lr[s] > lr[s - 1], (s, lr)
        assert lr[s] == pytest.approx(2e-4), (s, lr)
    model = load_model(out / "model.safetensors")
    on = enabled_layers(model)
    assert any(n.startswith("backbone.") for n in on) and any(n.startswith("decoder.") for n in on)


def test_standard_mode_quantizes_everything_from_the_start(standard_qat_run: Path) -> None:
    # the session's standard QAT run of the same teacher (5 steps, calib_batches=1; test/unit/conftest.py),
    # which test_qat_resume.py also compares its resumed run with
    rows = read_metrics(standard_qat_run / "metrics.csv")
    assert [int(r["step"]) for r in rows if r.get("loss")] == [1, 2, 3, 4, 5]
    assert not any(r.get("qat_stage") for r in rows)
    model = load_model(standard_qat_run / "model.safetensors")
    from qdbev_core.quant import quant_modules

    assert len(enabled_layers(model)) == len(quant_modules(model)) > 50


def test_student_takes_the_teachers_config(synth_dataroot: Path, tmp_path: Path) -> None:
    # whatever `nano` means today (--config / --model-set are ignored by QAT), the student is built
    # with the teacher's hyper-parameters, so the teacher's weights always fit
    model = BEVDetector("nano", num_queries=20, image_size=(64, 176), bev_h=16, bev_w=16)
    path = tmp_path / "other.safetensors"
    save_weights(model.state_dict(), path, {"config": model.cfg.to_dict()})
    _run(synth_dataroot, tmp_path / "other", QatConfig(teacher=str(path), mode="standard", calib_batches=1), steps=1)
    assert load_model(tmp_path / "other" / "model.safetensors").cfg.to_dict() == model.cfg.to_dict()
