"""`qdbev experiment cross-style` end to end on a tiny untrained model and tiny splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.cli.main import main as qdbev_main


def test_cross_style_end_to_end(confident_tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = confident_tiny_model
    out, data = tmp_path / "xs", tmp_path / "data"
    argv = ["experiment", "cross-style", "--model", str(model), "--styles", "default,dusk", "--scenes", "1",
            "--samples", "3", "--image-scale", "0.1", "--seed", "3", "--data-dir", str(data), "--out", str(out),
            "--markdown", str(tmp_path / "doc.md"), "--threads", "1", "--no-progress"]
    assert qdbev_main(argv) == 0
    res = json.loads((out / "cross-style.json").read_text())
    assert res["settings"]["styles"] == ["default", "dusk"]
    (m,) = res["models"]
    for style in ("default", "dusk"):
        s = m["scores"][style]
        assert 0.0 <= s["nds"] <= 1.0 and 0.0 <= s["map"] <= 1.0
        assert set(s["class_ap"]) == set(CLASS_NAMES)
        assert (out / f"tiny-{m['sha256'][:8]}" / style / "results.json").is_file()
    # the same scenes in both styles: identical tables
    a, b = data / "default" / "v1.0-mini", data / "dusk" / "v1.0-mini"
    assert (a / "sample_annotation.json").read_bytes() == (b / "sample_annotation.json").read_bytes()
    md = (out / "cross-style.md").read_text()
    assert "| class | default | dusk |" in md and "synthetic data" in md
    assert (tmp_path / "doc.md").read_text() == md
    assert (out / "cross-style.png").stat().st_size > 1000
    # a rerun reuses the splits and the scores
    capsys.readouterr()
    assert qdbev_main(argv) == 0
    res2 = json.loads((out / "cross-style.json").read_text())
    assert not any(n["generated"] for n in res2["splits"].values())
    assert res2["models"][0]["scores"]["dusk"]["cached"] is True
    assert res2["models"][0]["scores"]["dusk"]["nds"] == m["scores"]["dusk"]["nds"]


def test_cross_style_rejects_bad_settings(tmp_path: Path) -> None:
    from qdbev_core.experiments.cross_style import CrossStyleConfig

    with pytest.raises(ValueError, match="unknown style 'sepia'"):
        CrossStyleConfig(models=("m",), styles=("default", "sepia"))
    with pytest.raises(ValueError, match="not benchmarked"):
        CrossStyleConfig(models=("m",), styles=("default",), dataroots={"dusk": tmp_path})
    with pytest.raises(ValueError, match="at least one model"):
        CrossStyleConfig(models=())


def test_markdown_compares_every_model_with_the_first() -> None:
    """With several models the report divides each one's NDS by the first model's, style by style
    (issue 21 asks for a doubling on held-out styles), besides each model's own style ratios."""
    from qdbev_core.experiments.cross_style import format_markdown

    def scores(nds: dict) -> dict:
        return {st: {"nds": v, "map": v / 2, "class_ap": {c: 0.1 for c in CLASS_NAMES}} for st, v in nds.items()}

    result = {"settings": {"styles": ["default", "dusk"], "scenes": 1, "samples": 2, "image_scale": 0.1, "seed": 3},
              "splits": {}, "command": None,
              "models": [{"model": "ref", "scores": scores({"default": 0.50, "dusk": 0.15})},
                         {"model": "new", "scores": scores({"default": 0.48, "dusk": 0.33})},
                         {"model": "zero", "scores": scores({"default": 0.40, "dusk": 0.0})}]}
    md = format_markdown(result)
    assert "NDS relative to `ref` (the first model)" in md
    assert "| `new` | 0.96 | 2.20 |" in md and "| `zero` | 0.80 | 0.00 |" in md
    assert "| `ref` | 0.30 |" in md  # its own dusk / default ratio (the style table)
    only_one = format_markdown({**result, "models": result["models"][:1]})
    assert "the first model" not in only_one


def test_two_files_with_one_stem_keep_separate_score_caches() -> None:
    """Two runs' ``model.safetensors`` must not overwrite each other's cached scores."""
    from qdbev_core.experiments.cross_style import score_dir_name

    a = score_dir_name(None, Path("runs/a/model.safetensors"), "0123456789abcdef")
    b = score_dir_name(None, Path("runs/b/model.safetensors"), "fedcba9876543210")
    assert a != b and a.startswith("model-") and "/" not in a
    assert score_dir_name("nano-fp32-yaw", Path("models/nano-fp32-yaw.safetensors"), "00") == "nano-fp32-yaw"
