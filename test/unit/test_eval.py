"""Results writer (ego Detections -> nuScenes submission) and the official-devkit evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.classes import CLASS_INDEX, CLASS_NAMES
from qdbev_core.data.reader import ego_boxes_to_global
from qdbev_core.eval import DEFAULT_META, ResultsWriter, detections_to_nusc, evaluate, format_summary
from qdbev_core.geometry import make_transform, quat_to_yaw, wrap_angle, yaw_to_quat
from qdbev_core.types import Detections

VERSION = "v1.0-mini"
SPLIT = "synth_val"


def _run_cli(module_name: str, argv: list[str]) -> int:
    """Run a verb module like ``qdbev`` does (``gt-results`` is not wired into main yet)."""
    import importlib

    module = importlib.import_module(f"qdbev_core.cli.{module_name}")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv)) or 0)


# ----------------------------------------------------------------------------- results writer
def test_detections_to_nusc_fields() -> None:
    pose = make_transform(yaw_to_quat(0.7), [300.0, -120.0, 1.0])
    boxes = np.array([
        [10.0, 2.0, 0.5, 4.5, 1.9, 1.6, 0.3, 3.0, 0.0],
        [-5.0, 8.0, 0.2, 0.5, 0.6, 1.8, -2.0, 0.0, 0.0],
        [20.0, -3.0, 0.4, 0.4, 0.4, 1.0, 1.0, 0.0, 0.0],
    ])
    labels = np.array([CLASS_INDEX["car"], CLASS_INDEX["pedestrian"], CLASS_INDEX["traffic_cone"]])
    dets = Detections(boxes=boxes, scores=np.array([0.2, 0.9, 0.5]), labels=labels)
    out = detections_to_nusc("tok", dets, pose)
    assert [b["detection_score"] for b in out] == [0.9, 0.5, 0.2]  # sorted by score
    by_name = {b["detection_name"]: b for b in out}
    g = ego_boxes_to_global(boxes, pose)
    car = by_name["car"]
    np.testing.assert_allclose(car["translation"], g[0, 0:3])
    assert car["size"] == [1.9, 4.5, 1.6]  # [w, l, h]
    assert abs(wrap_angle(quat_to_yaw(car["rotation"]) - g[0, 6])) < 1e-9
    np.testing.assert_allclose(np.linalg.norm(car["rotation"]), 1.0)
    np.testing.assert_allclose(car["velocity"], g[0, 7:9])
    assert car["attribute_name"] == "vehicle.moving"
    assert by_name["pedestrian"]["attribute_name"] == "pedestrian.standing"
    assert by_name["traffic_cone"]["attribute_name"] == ""
    assert set(car) == {"sample_token", "translation", "size", "rotation", "velocity", "detection_name",
                        "detection_score", "attribute_name"}
    # explicit attributes override the default rule
    out2 = detections_to_nusc("tok", dets, pose, attributes=["vehicle.stopped", "pedestrian.moving", ""])
    assert {b["detection_name"]: b["attribute_name"] for b in out2}["car"] == "vehicle.stopped"


def test_writer_caps_at_500_and_keeps_top_scores() -> None:
    rng = np.random.default_rng(0)
    n = 700
    boxes = np.zeros((n, 9))
    boxes[:, 0:2] = rng.uniform(-40, 40, (n, 2))
    boxes[:, 3:6] = 1.0
    scores = rng.uniform(0, 1, n)
    w = ResultsWriter(["a", "b"])
    assert w.add("a", Detections(boxes=boxes, scores=scores, labels=np.zeros(n, dtype=np.int64)), np.eye(4)) == 500
    w.add("b", Detections(), np.eye(4))
    sub = w.to_dict()
    kept = sorted(b["detection_score"] for b in sub["results"]["a"])
    np.testing.assert_allclose(kept, np.sort(scores)[-500:])
    assert sub["results"]["b"] == []
    assert sub["meta"] == DEFAULT_META and sub["meta"]["use_camera"] is True
    assert not any(v for k, v in sub["meta"].items() if k != "use_camera")


def test_writer_errors(tmp_path: Path) -> None:
    w = ResultsWriter(["a", "b"])
    w.add("a", Detections(), np.eye(4))
    w.add("b", Detections(), np.eye(4))
    with pytest.raises(ValueError, match="no boxes"):
        w.write(tmp_path / "empty.json")
    assert not (tmp_path / "empty.json").exists()
    with pytest.raises(ValueError, match="twice"):
        w.add("a", Detections(), np.eye(4))
    with pytest.raises(ValueError, match="not in the split"):
        w.add("zzz", Detections(), np.eye(4))
    partial = ResultsWriter(["a", "b"])
    one = Detections(boxes=np.array([[1.0, 0, 0, 4, 2, 1.5, 0, 0, 0]]), scores=np.array([0.5]),
                     labels=np.array([0]))
    partial.add("a", one, np.eye(4))
    with pytest.raises(ValueError, match="missing 1 of 2"):
        partial.to_dict()


# ----------------------------------------------------------------------------- official evaluation
@pytest.fixture(scope="module")
def oracle(synth_dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """GT results (exact and jittered by 0.5 m) of synth_val, each scored once."""
    out = tmp_path_factory.mktemp("eval")
    exact, jitter = out / "gt.json", out / "gt_jitter.json"
    common = ["--dataroot", str(synth_dataroot), "--version", VERSION, "--split", SPLIT]
    assert _run_cli("gt_results", [*common, "--out", str(exact)]) == 0
    assert _run_cli("gt_results", [*common, "--out", str(jitter), "--jitter-m", "0.5", "--seed", "1"]) == 0
    s_exact = evaluate(exact, synth_dataroot, VERSION, SPLIT, out / "exact")
    s_jitter = evaluate(jitter, synth_dataroot, VERSION, SPLIT, out / "jitter")
    return {"dir": out, "exact": s_exact, "jitter": s_jitter, "exact_json": exact}


def test_gt_oracle_scores_perfect(oracle: dict) -> None:
    s = oracle["exact"]
    assert s["nd_score"] >= 0.999, format_summary(s)
    assert s["mean_ap"] >= 0.999, format_summary(s)
    assert s["tp_errors"]["trans_err"] < 1e-3
    saved = json.loads((oracle["dir"] / "exact" / "metrics_summary.json").read_text())
    assert saved["nd_score"] == pytest.approx(s["nd_score"])


def test_jittered_gt_scores_lower(oracle: dict) -> None:
    e, j = oracle["exact"], oracle["jitter"]
    assert e["nd_score"] - j["nd_score"] > 0.05, format_summary(j)
    assert j["tp_errors"]["trans_err"] == pytest.approx(0.5, abs=0.02)
    assert j["mean_ap"] < e["mean_ap"]


def test_results_file_covers_split(oracle: dict, synth_dataroot: Path) -> None:
    from qdbev_core.data.reader import NuScenesReader

    sub = json.loads(oracle["exact_json"].read_text())
    reader = NuScenesReader(synth_dataroot, VERSION, split=SPLIT, load_images=False)
    assert set(sub["results"]) == set(reader.sample_tokens)
    names = {b["detection_name"] for boxes in sub["results"].values() for b in boxes}
    assert names <= set(CLASS_NAMES)
    assert all(b["detection_score"] == 1.0 for boxes in sub["results"].values() for b in boxes)


def test_format_summary_table(oracle: dict) -> None:
    text = format_summary(oracle["exact"])
    lines = text.splitlines()
    for key in ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE"):
        assert any(line.startswith(key) for line in lines)
    rows = [line for line in lines if line.split() and line.split()[0] in CLASS_NAMES]
    assert len(rows) == len(CLASS_NAMES)
    assert len({len(r) for r in rows}) == 1  # aligned


def test_evaluate_rejects_empty_and_incomplete(oracle: dict, synth_dataroot: Path, tmp_path: Path) -> None:
    sub = json.loads(oracle["exact_json"].read_text())
    empty = {"meta": sub["meta"], "results": {k: [] for k in sub["results"]}}
    p = tmp_path / "empty.json"
    p.write_text(json.dumps(empty))
    with pytest.raises(ValueError, match="no boxes"):
        evaluate(p, synth_dataroot, VERSION, SPLIT, tmp_path / "o1")
    first = next(iter(sub["results"]))
    partial = {"meta": sub["meta"], "results": {k: v for k, v in sub["results"].items() if k != first}}
    p.write_text(json.dumps(partial))
    with pytest.raises(ValueError, match="missing 1 of"):
        evaluate(p, synth_dataroot, VERSION, SPLIT, tmp_path / "o2")
    with pytest.raises(ValueError, match="mini_val"):
        evaluate(oracle["exact_json"], synth_dataroot, VERSION, "mini_val", tmp_path / "o3")
    with pytest.raises(FileNotFoundError):
        evaluate(tmp_path / "nope.json", synth_dataroot, VERSION, SPLIT, tmp_path / "o4")


def test_eval_cli_prints_table(oracle: dict, synth_dataroot: Path, capsys: pytest.CaptureFixture) -> None:
    """The CLI path, re-using the exact oracle (third and last devkit run of this module)."""
    rc = _run_cli("eval_cmd", ["--results", str(oracle["exact_json"]), "--dataroot", str(synth_dataroot),
                               "--version", VERSION, "--split", SPLIT, "--output-dir", str(oracle["dir"] / "cli")])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0].split()[0] == "mAP" and "NDS" in out and "traffic_cone" in out
    assert (oracle["dir"] / "cli" / "metrics_summary.json").is_file()


def test_heading_breakdown_tells_flipped_from_across(oracle: dict) -> None:
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox

    from qdbev_core.eval.heading import breakdown_to_dict, format_breakdown, heading_breakdown

    results = json.loads(oracle["exact_json"].read_text())["results"]
    gt = EvalBoxes.deserialize(results, DetectionBox)

    def turned(by: float, speed_scale: float) -> EvalBoxes:
        out = {}
        for tok, boxes in results.items():
            out[tok] = [dict(b, rotation=list(yaw_to_quat(quat_to_yaw(b["rotation"]) + by)),
                             velocity=[v * speed_scale for v in b["velocity"]]) for b in boxes]
        return EvalBoxes.deserialize(out, DetectionBox)

    n_gt = sum(len(v) for v in results.values())
    for by, field in ((0.0, "aligned"), (np.pi, "flipped"), (np.pi / 2, "across"), (-2.0, "across")):
        bd = heading_breakdown(gt, turned(by, 0.5))
        assert sum(b.count for st in bd.values() for b in st.values()) == n_gt  # every box matched itself
        for name, states in bd.items():
            for state, b in states.items():
                assert getattr(b, field) == 1.0, (by, name, state, b)
                assert b.mean_error_rad == pytest.approx(abs(np.remainder(by + np.pi, 2 * np.pi) - np.pi), abs=1e-4)
                if state == "moving":
                    assert b.gt_speed_mps >= 0.5 and b.pred_speed_mps == pytest.approx(0.5 * b.gt_speed_mps, rel=1e-4)
    assert any("moving" in st for st in bd.values())
    table = format_breakdown(breakdown_to_dict(bd)).splitlines()
    assert "flipped" in table[0] and len(table) == 2 + sum(len(st) for st in bd.values())
    # low scores and other classes are not matched
    low = {t: [dict(b, detection_score=0.1) for b in bs] for t, bs in results.items()}
    assert heading_breakdown(gt, EvalBoxes.deserialize(low, DetectionBox)) == {}
