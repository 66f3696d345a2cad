"""Warm start (`qdbev train --init-from`): weights copied, BEV-grid parameters resampled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qdbev_core.checkpoint import save_weights
from qdbev_core.cli.train import parse_model_sets
from qdbev_core.model import BEVDetector
from qdbev_core.train.warm_start import adapt_state_dict, warm_start

SMALL = dict(image_size=(64, 176), bev_h=8, bev_w=8, num_queries=20)


def _save(model: BEVDetector, path: Path) -> Path:
    save_weights(model.state_dict(), path, {"config": model.cfg.to_dict()})
    return path


def test_same_grid_copies_every_weight(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = BEVDetector("nano", **SMALL)
    dst = BEVDetector("nano", **SMALL)
    warm_start(dst, _save(src, tmp_path / "src.safetensors"))
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), name


def test_finer_grid_resamples_the_bev_parameters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = BEVDetector("nano", **SMALL)
    with torch.no_grad():  # a BEV embedding constant along rows, ramp along columns
        ramp = torch.linspace(-1, 1, 8)
        src.encoder.bev_embedding.weight.copy_(ramp.repeat(8)[:, None].expand(-1, src.cfg.embed_dims))
    dst = BEVDetector("nano", **{**SMALL, "bev_h": 16, "bev_w": 16})
    warm_start(dst, _save(src, tmp_path / "src.safetensors"))
    emb = dst.encoder.bev_embedding.weight.detach().reshape(16, 16, -1)[..., 0]
    assert emb.shape == (16, 16)
    assert torch.allclose(emb[0], emb[7]) and torch.allclose(emb[3], emb[15])  # still constant along rows
    assert bool((emb[0, 1:] >= emb[0, :-1]).all()) and emb[0, 0] < -0.8 and emb[0, -1] > 0.8  # the ramp survives
    assert dst.encoder.pos_row.weight.shape[0] == 16 and dst.encoder.pos_col.weight.shape[0] == 16
    assert torch.equal(dst.backbone.stem.conv.weight, src.backbone.stem.conv.weight)


def test_other_shape_changes_are_refused_with_names(tmp_path: Path) -> None:
    src = BEVDetector("nano", **SMALL)
    dst = BEVDetector("nano", **{**SMALL, "embed_dims": 32, "ffn_dims": 64, "dense_channels": 32})
    with pytest.raises(ValueError, match="shapes differ beyond the BEV grid.*neck"):
        adapt_state_dict(src.state_dict(), dst, "src.safetensors")
    other = BEVDetector("nano", **{**SMALL, "dec_layers": 2})
    with pytest.raises(ValueError, match="missing|unexpected"):
        adapt_state_dict(src.state_dict(), other, "src.safetensors")


def test_deeper_encoder_starts_its_extra_layers_as_copies_of_the_last(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = BEVDetector("nano", **{**SMALL, "enc_layers": 1})
    dst = BEVDetector("nano", **{**SMALL, "enc_layers": 3})
    warm_start(dst, _save(src, tmp_path / "src.safetensors"))
    s, d = src.state_dict(), dst.state_dict()
    layer0 = {k[len("encoder.layers.0."):]: v for k, v in s.items() if k.startswith("encoder.layers.0.")}
    assert layer0
    for i in (0, 1, 2):
        for suffix, v in layer0.items():
            assert torch.equal(d[f"encoder.layers.{i}.{suffix}"], v), (i, suffix)
    assert torch.equal(d["backbone.stem.conv.weight"], s["backbone.stem.conv.weight"])
    # a shallower target is still refused: the source's extra layer would be dropped silently
    with pytest.raises(ValueError, match="unexpected"):
        adapt_state_dict(dst.state_dict(), BEVDetector("nano", **{**SMALL, "enc_layers": 1}), "deep.safetensors")


def test_model_set_parses_json_values_and_rejects_unknown_fields() -> None:
    assert parse_model_sets(["bev_h=48", "image_size=[192,352]", "query_init=heatmap"]) == {
        "bev_h": 48, "image_size": (192, 352), "query_init": "heatmap"}
    with pytest.raises(SystemExit, match="not a model config field"):
        parse_model_sets(["bev_height=3"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_model_sets(["bev_h"])


def test_quantized_or_missing_sources_are_refused(tmp_path: Path) -> None:
    src = BEVDetector("nano", **SMALL)
    fq = tmp_path / "fq.safetensors"
    save_weights(src.state_dict(), fq, {"config": src.cfg.to_dict(), "quant_spec": {}})
    with pytest.raises(ValueError, match="quantized model"):
        warm_start(BEVDetector("nano", **SMALL), fq)
    with pytest.raises(FileNotFoundError, match="--init-from"):
        warm_start(BEVDetector("nano", **SMALL), tmp_path / "missing.safetensors")
