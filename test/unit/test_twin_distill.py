"""Twin-render distillation: the dataset pairs each training image with the same scene in another
look (same geometry, no photometric distortion), the loss is zero where the student sees what the
teacher sees, and a training run logs, saves and resumes its settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

INPUT_HW = (32, 88)
TINY = {"num_queries": 30, "image_size": (64, 176), "bev_h": 16, "bev_w": 16}


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory):
    """The same 2 scenes x 3 samples (seed 3) in the default look and in the ``dusk`` style, and
    another seed's dataset (other samples)."""
    from qdbev_core.data.synth import SynthConfig, generate_dataset

    base = tmp_path_factory.mktemp("twins")
    roots = {}
    for name, seed, style in (("default", 3, None), ("dusk", 3, "dusk"), ("other", 4, None)):
        roots[name] = base / name
        generate_dataset(SynthConfig(out=roots[name], scenes=2, samples=3, image_scale=0.1, seed=seed, style=style,
                                     progress=False))
    return roots


def _reader(root: Path):
    from qdbev_core.data.reader import NuScenesReader

    return NuScenesReader(root, "v1.0-mini", split="synth_train")


def _dataset(root: Path, twin: Path | None, image_aug: str):
    from qdbev_core.train.augment import BevAugmentConfig, ImageAugConfig
    from qdbev_core.train.data import DataConfig, DetectionDataset

    cfg = DataConfig(input_hw=INPUT_HW, augment=BevAugmentConfig(), temporal=True,
                     image_aug=ImageAugConfig.from_names(image_aug))
    return DetectionDataset(_reader(root), cfg, twin=_reader(twin) if twin is not None else None)


def test_twin_image_shares_the_geometry_not_the_photometric_draws(twins) -> None:
    key = (1, 4242)  # sample 1 has a previous sample
    # a twin of the same images with only resize / crop / flip: exactly the training image
    geo = _dataset(twins["default"], twins["default"], "resize-crop-flip")[key]
    assert torch.equal(geo["twin_img"], geo["img"]) and torch.equal(geo["twin_prev_img"], geo["prev_img"])
    assert geo["twin_img"].shape == (6, 3, *INPUT_HW)
    # photometric + GridMask touch the student's image only: the twin is the plain preprocessed image
    aug = _dataset(twins["default"], twins["default"], "photometric,gridmask")[key]
    plain = _dataset(twins["default"], None, "")[key]
    assert not torch.equal(aug["img"], plain["img"])
    assert torch.equal(aug["twin_img"], plain["img"]) and torch.equal(aug["twin_prev_img"], plain["prev_img"])
    assert torch.equal(aug["cam2ego"], plain["cam2ego"]) and torch.equal(aug["gt_boxes"], plain["gt_boxes"])
    # another look of the same scenes: other pixels, the same geometry and targets
    styled = _dataset(twins["dusk"], twins["default"], "resize-crop-flip")[key]
    assert torch.equal(styled["twin_img"], geo["img"]) and not torch.equal(styled["img"], geo["img"])
    assert torch.equal(styled["intrinsics"], geo["intrinsics"]) and torch.equal(styled["gt_boxes"], geo["gt_boxes"])
    # no twin: no twin keys (the batches of every other run are unchanged)
    assert "twin_img" not in plain and "twin_prev_img" not in plain


def test_a_twin_with_other_samples_is_refused(twins) -> None:
    with pytest.raises(ValueError, match="does not hold the samples.*same --seed"):
        _dataset(twins["dusk"], twins["other"], "")


def _tiny_teacher(path: Path) -> Path:
    from qdbev_core.checkpoint import save_weights
    from qdbev_core.model import BEVDetector

    torch.manual_seed(0)
    model = BEVDetector("nano", **TINY)
    save_weights(model.state_dict(), path, {"config": model.cfg.to_dict(), "precision": "fp32"})
    return path


def test_loss_is_zero_on_the_teachers_own_view_and_trains_only_the_student(twins, tmp_path: Path) -> None:
    from qdbev_core.models_manifest import load_model
    from qdbev_core.train.data import collate
    from qdbev_core.train.twin_distill import TwinDistillation, TwinDistillConfig

    teacher = _tiny_teacher(tmp_path / "t.safetensors")
    student = load_model(str(teacher))
    student.eval()  # no dropout: identical weights and inputs must give identical features
    twin = TwinDistillation(TwinDistillConfig(str(teacher), twins["default"]), student.cfg, torch.device("cpu"))

    def losses(root: Path) -> dict:
        from qdbev_core.train.augment import BevAugmentConfig
        from qdbev_core.train.data import DataConfig, DetectionDataset

        ds = DetectionDataset(_reader(root), DataConfig(input_hw=tuple(TINY["image_size"]), augment=BevAugmentConfig()),
                              twin=_reader(twins["default"]))
        batch = collate([ds[(1, 9)], ds[(2, 10)]])
        out = student(batch["img"], batch["intrinsics"], batch["cam2ego"])
        return twin.losses(out, batch, [{"boxes": b} for b in batch["gt_boxes"]])

    same = losses(twins["default"])
    assert float(same["twin_vgd"].detach()) == pytest.approx(0.0, abs=1e-6)
    other = losses(twins["dusk"])
    assert float(other["twin_vgd_img"]) > 1e-3 and float(other["twin_vgd_bev"]) > 0
    other["twin_vgd"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in twin.teacher.parameters()) and not twin.teacher.training


def test_teacher_with_other_features_is_refused(twins, tmp_path: Path) -> None:
    from qdbev_core.model import get_config
    from qdbev_core.train.twin_distill import TwinDistillation, TwinDistillConfig

    teacher = _tiny_teacher(tmp_path / "t.safetensors")
    with pytest.raises(ValueError, match="other hyper-parameters than the student"):
        TwinDistillation(TwinDistillConfig(str(teacher), twins["default"]), get_config("nano", **{**TINY, "bev_h": 8}),
                         torch.device("cpu"))
    with pytest.raises(ValueError, match="img and/or bev"):
        TwinDistillConfig(str(teacher), twins["default"], terms="img,rgb")


def test_training_run_logs_saves_and_resumes_the_twin_settings(twins, tmp_path: Path) -> None:
    from qdbev_core.checkpoint import read_sidecar
    from qdbev_core.train.config import TrainConfig
    from qdbev_core.train.trainer import read_metrics, train
    from qdbev_core.train.twin_distill import TwinDistillConfig

    teacher = _tiny_teacher(tmp_path / "t.safetensors")
    cfg = TrainConfig(model="nano", dataroot=twins["dusk"], split="synth_train", out=tmp_path / "run", steps=2,
                      batch_size=1, lr=1e-4, warmup_steps=0, ckpt_every=10, log_every=1, eval_split=None,
                      num_workers=0, threads=1, image_aug="photometric", model_overrides=dict(TINY),
                      init_from=str(teacher), twin_distill=TwinDistillConfig(str(teacher), twins["default"], weight=0.5))
    train(cfg, progress=False)
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.csv") if r.get("loss")]
    assert len(rows) == 2 and all(float(r["twin_vgd"]) > 0 and float(r["twin_vgd_img"]) > 0 for r in rows)
    # the weighted term enters the loss: loss = detection terms + twin_vgd
    det = sum(float(rows[0][k]) for k in rows[0] if k.startswith("loss_"))
    assert float(rows[0]["loss"]) > det
    side = read_sidecar(tmp_path / "run" / "model.safetensors")
    assert side["twin_distill"]["weight"] == 0.5 and side["twin_distill"]["terms"] == ["img", "bev"]
    assert side["twin_distill"]["vgd_effective"]["bev_weight"] == 70.0
    back = TrainConfig.from_dict(side["train"])
    assert back.twin_distill == cfg.twin_distill
    with pytest.raises(ValueError, match="full-precision training option"):
        from qdbev_core.train.qat import QatConfig

        TrainConfig(twin_distill=cfg.twin_distill, qat=QatConfig(teacher=str(teacher)))


def test_cli_needs_both_halves_and_an_existing_twin(twins, tmp_path: Path) -> None:
    from qdbev_core.cli import qat as qat_cli
    from qdbev_core.cli import train as train_cli

    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    base = ["--dataroot", str(twins["dusk"]), "--out", str(tmp_path / "o")]
    assert train_cli.twin_distill_config(p.parse_args(base)) is None
    with pytest.raises(SystemExit, match="both --twin-teacher and --twin-dataroot"):
        train_cli.twin_distill_config(p.parse_args(base + ["--twin-teacher", "nano-fp32-yaw"]))
    with pytest.raises(SystemExit, match="no v1.0-mini/ table folder"):
        train_cli.twin_distill_config(p.parse_args(base + ["--twin-teacher", "m", "--twin-dataroot", str(tmp_path)]))
    cfg = train_cli.twin_distill_config(p.parse_args(
        base + ["--twin-teacher", "m", "--twin-dataroot", str(twins["default"]), "--twin-terms", "bev",
                "--twin-weight", "0.25"]))
    assert cfg.terms == ("bev",) and cfg.weight == 0.25 and cfg.twin_dataroot == twins["default"]
    q = argparse.ArgumentParser()
    qat_cli.add_arguments(q)
    assert not any(a.dest.startswith("twin") for a in q._actions)  # QAT has its own teacher
