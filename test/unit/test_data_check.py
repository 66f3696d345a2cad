"""``qdbev data check``: a usable dataroot passes, broken ones fail with readable problems."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from qdbev_core.classes import CATEGORY_OF_CLASS, CLASS_NAMES
from qdbev_core.data.check import _DETECTION_OF_CATEGORY, check_dataroot

VERSION = "v1.0-mini"


def _data_cli(argv: list[str]) -> int:
    """``qdbev data ...`` exactly as the main entry point runs it (falls back to the verb module)."""
    try:
        from qdbev_core.cli.main import main
    except ImportError:  # another verb of main not there yet
        from qdbev_core.cli import data_check

        parser = argparse.ArgumentParser()
        data_check.add_arguments(parser)
        return int(data_check.run(parser.parse_args(argv)))
    return main(["data", *argv])


def test_category_mapping_matches_devkit() -> None:
    from nuscenes.eval.detection.utils import category_to_detection_name

    for cat, name in _DETECTION_OF_CATEGORY.items():
        assert category_to_detection_name(cat) == name
    for name in CLASS_NAMES:
        assert _DETECTION_OF_CATEGORY[CATEGORY_OF_CLASS[name]] == name


def test_intact_dataset_passes(synth_dataroot: Path, capsys: pytest.CaptureFixture) -> None:
    rep = check_dataroot(synth_dataroot, VERSION, split="synth_val")
    assert rep.ok, rep.format()
    assert set(rep.splits) >= {"synth_train", "synth_val"}
    splits = json.loads((synth_dataroot / VERSION / "splits.json").read_text())
    assert rep.splits["synth_val"][0] == len(splits["synth_val"])
    assert sum(v[1] for k, v in rep.splits.items() if k.startswith("synth_")) == rep.table_rows["sample"]
    assert set(rep.class_counts) == set(CLASS_NAMES)
    assert all(total >= scored for total, scored in rep.class_counts.values())
    assert sum(scored for _, scored in rep.class_counts.values()) > 0

    assert _data_cli(["check", "--dataroot", str(synth_dataroot), "--version", VERSION]) == 0
    out = capsys.readouterr().out
    assert "synth_val" in out and "car" in out and out.rstrip().endswith("OK")


def test_broken_datasets_fail(synth_dataroot: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(synth_dataroot, broken)
    sample_data = json.loads((broken / VERSION / "sample_data.json").read_text())
    key_img = next(sd["filename"] for sd in sample_data
                   if sd["is_key_frame"] and sd["filename"].startswith("samples/CAM_FRONT_LEFT"))
    (broken / key_img).unlink()

    rep = check_dataroot(broken, VERSION)
    assert not rep.ok
    text = rep.format()
    assert str(broken / key_img) in text and "missing" in text and "fix:" in text

    (broken / VERSION / "sample_annotation.json").unlink()
    assert _data_cli(["check", "--dataroot", str(broken), "--version", VERSION]) == 1
    out = capsys.readouterr().out
    assert "sample_annotation.json" in out and "missing table" in out

    # broken calibration: a non-unit quaternion and a negative focal length
    calib = json.loads((broken / VERSION / "calibrated_sensor.json").read_text())
    cam = next(c for c in calib if c["camera_intrinsic"])
    cam["camera_intrinsic"][0][0] = -5.0
    calib[0]["rotation"] = [2.0, 0.0, 0.0, 0.0]
    (broken / VERSION / "calibrated_sensor.json").write_text(json.dumps(calib))
    shutil.copy(synth_dataroot / VERSION / "sample_annotation.json", broken / VERSION / "sample_annotation.json")
    whats = " | ".join(p.what for p in check_dataroot(broken, VERSION).problems)
    assert "focal length" in whats and "unit quaternion" in whats


def test_unknown_split_and_missing_version(synth_dataroot: Path, tmp_path: Path) -> None:
    rep = check_dataroot(synth_dataroot, VERSION, split="nope")
    assert not rep.ok and "synth_val" in rep.format()
    rep = check_dataroot(tmp_path, VERSION)
    assert not rep.ok and VERSION in rep.format()
