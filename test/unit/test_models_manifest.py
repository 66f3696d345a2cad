"""Models by name from a manifest: sha256-verified, refused with a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from qdbev_core.checkpoint import CheckpointError, save_weights
from qdbev_core.cli.main import main as qdbev_main
from qdbev_core.model import BEVDetector
from qdbev_core.models_manifest import load_model, read_manifest


@pytest.fixture()
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    torch.manual_seed(0)
    model = BEVDetector("nano", num_queries=20, bev_h=8, bev_w=8)
    side = save_weights(model.state_dict(), tmp_path / "toy.safetensors", {"config": model.cfg.to_dict()})
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"models": [
        {"name": "toy-fp32", "config": "nano", "file": "toy.safetensors", "sha256": side["sha256"]},
    ]}))
    monkeypatch.setenv("QDBEV_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_load_by_name(models_dir: Path) -> None:
    assert list(read_manifest()) == ["toy-fp32"]
    model = load_model("toy-fp32")
    assert model.cfg.num_queries == 20 and not model.training


def test_modified_file_is_refused_by_name(models_dir: Path, capsys: pytest.CaptureFixture) -> None:
    f = models_dir / "toy.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # flip one byte of the last tensor
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"toy\.safetensors: sha256 .* does not match the manifest"):
        load_model("toy-fp32")
    assert qdbev_main(["models"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_unknown_name_lists_the_known_ones(models_dir: Path) -> None:
    with pytest.raises(CheckpointError, match=r"neither a name in .*manifest\.yaml \(toy-fp32\) nor a file"):
        load_model("nano-w2a2")
