"""`qdbev pack` / `qdbev unpack` / `qdbev size` on a tiny fake-quant checkpoint: packed outputs equal
the fake-quant model's, unpack -> pack gives the same file bytes, sizes and ratio are reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qdbev_core.checkpoint import save_weights, sha256_file
from qdbev_core.cli.main import main as qdbev_main
from qdbev_core.cli.pack import outputs_equal, random_inputs
from qdbev_core.model import BEVDetector
from qdbev_core.models_manifest import load_model
from qdbev_core.quant import QuantSpec, calibrate, quantize_model

TINY = {"num_queries": 30, "image_size": (64, 176), "bev_h": 16, "bev_w": 16}


def test_pack_unpack_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    fp = BEVDetector("nano", **TINY)
    fp_path = tmp_path / "fp.safetensors"
    save_weights(fp.state_dict(), fp_path, {"config": fp.cfg.to_dict(), "precision": "fp32"})
    q = quantize_model(fp, QuantSpec.from_bits("w4a6"))
    calibrate(q, [random_inputs(q.cfg)])
    ck = tmp_path / "qat.safetensors"
    save_weights(q.state_dict(), ck, {"config": q.cfg.to_dict(), "quant_spec": q.quant_spec.to_dict(),
                                      "precision": "w4a6-fakequant", "command": "qdbev qat ..."})
    packed = tmp_path / "packed.safetensors"
    assert qdbev_main(["pack", "--model", str(ck), "--out", str(packed)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["outputs_equal"] and rep["ratio"] > 4 and rep["packed_bytes"] == packed.stat().st_size
    side = json.loads(packed.with_suffix(".json").read_text())
    assert side["format"] == "qdbev-packed-v1" and side["command"] == "qdbev qat ..." and side["precision"] == "w4a6"
    assert side["pack_layout"] == 2

    assert qdbev_main(["size", "--model", str(packed), "--json"]) == 0
    size = json.loads(capsys.readouterr().out)
    assert size["packed_bytes"] == packed.stat().st_size and size["fp32_bytes"] == pytest.approx(fp_path.stat().st_size, rel=0.01)
    assert size["ratio"] == pytest.approx(size["fp32_bytes"] / size["packed_bytes"])
    assert qdbev_main(["size", "--model", str(packed)]) == 0
    assert f"({packed.stat().st_size:,} bytes;" in capsys.readouterr().out
    assert qdbev_main(["size", "--model", str(fp_path)]) == 0
    assert "fp32 safetensors" in capsys.readouterr().out

    fq = tmp_path / "unpacked.safetensors"
    assert qdbev_main(["unpack", "--model", str(packed), "--out", str(fq)]) == 0
    capsys.readouterr()
    assert outputs_equal(load_model(fq), load_model(packed), random_inputs(q.cfg, seed=3))
    again = tmp_path / "again.safetensors"
    assert qdbev_main(["pack", "--model", str(fq), "--out", str(again)]) == 0
    assert sha256_file(again) == sha256_file(packed)  # the same integers, scales and floats

    assert qdbev_main(["pack", "--model", str(packed), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "already a packed" in capsys.readouterr().err
