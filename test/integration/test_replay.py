"""``qdbev replay``: a bag through the node's frame assembly + a random-weight nano model, offline.

The bag is written from the ``synth_dataroot`` fixture; the model is the random-weight ``nano``
of ``test_node_e2e.saved_random_model``. Checks: every key-frame set is processed, the output bag
holds detections stamped with the CAM_FRONT stamps in ``base_link``, their velocities (same
header, paired back by stamp) and markers, the first
frame's detections equal the engine run directly on the dataset reader's frame (the bag path and
the dataset path give the model the same input), and scoring with the devkit runs (or says why not).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.bag import messages as m
from qdbev_core.bag.from_nuscenes import bag_from_nuscenes
from qdbev_core.bag.layout import (
    DETECTIONS_TOPIC,
    GROUND_TRUTH_TOPIC,
    MARKERS_TOPIC,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    VELOCITY_TOPIC,
    NodeParams,
    read_bag_source,
)
from qdbev_core.bag.typestore import get_typestore
from qdbev_core.classes import CLASS_NAMES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_node_e2e import saved_random_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VERSION = "v1.0-mini"


@pytest.mark.timeout(180)
def test_replay_cli_output_bag_and_score(synth_dataroot: Path, tmp_path: Path, capsys) -> None:
    from rosbags.rosbag2 import Reader

    from qdbev_core.cli.main import main
    from qdbev_core.data.reader import NuScenesReader

    reader = NuScenesReader(synth_dataroot, VERSION, split="synth_val")
    scene = reader.scenes()[0]
    bag = tmp_path / "in_bag"
    bag_from_nuscenes(synth_dataroot, VERSION, scene.name, bag, nusc=reader.nusc)
    model = saved_random_model(tmp_path)
    out = tmp_path / "out_bag"
    summary_json = tmp_path / "replay.json"
    code = main(["replay", str(bag), "--model", str(model), "--backend", "torch", "--out", str(out),
                 "--score-threshold", "0.0", "--eval-dir", str(tmp_path / "eval"), "--json", str(summary_json)])
    text = capsys.readouterr().out
    assert code == 0, text
    summary = json.loads(summary_json.read_text())
    n = scene.num_samples
    assert summary["sets"] == summary["frames"] == n and summary["skipped"] == {}
    assert summary["counters"].get("no_ego_pose", 0) == 0 and summary["counters"]["sync_dropped"] == 0
    assert f"{n}/{n} key frames of {scene.name}" in summary["eval_note"]
    # scoring runs (random weights at threshold 0: boxes every frame; the numbers themselves mean nothing);
    # the reasons it may not are tested in test_replay_errors_are_clear
    assert "nd_score" in summary, summary["eval_note"]
    assert 0.0 <= summary["nd_score"] <= 1.0 and "NDS" in text
    assert (tmp_path / "eval" / "metrics_summary.json").is_file()
    assert (tmp_path / "eval" / "results.json").is_file()

    # output bag: detections with the right stamps and frames, markers, copied TF / GT
    store = get_typestore()
    src = read_bag_source(bag)
    stamps = [k.stamp_ns for k in src.key_frames]
    msgs: dict[str, list] = {}
    with Reader(out) as r:
        for conn, t, raw in r.messages():
            msgs.setdefault(conn.topic, []).append((t, store.deserialize_cdr(raw, conn.msgtype)))
    assert {k: len(v) for k, v in msgs.items()} == {DETECTIONS_TOPIC: n, VELOCITY_TOPIC: n, MARKERS_TOPIC: n,
                                                   TF_STATIC_TOPIC: 1, TF_TOPIC: 7 * n, GROUND_TRUTH_TOPIC: n}
    params = NodeParams.from_file(REPO / "config" / "qdbev.yaml")
    assert [m.stamp_of(d) for _, d in msgs[DETECTIONS_TOPIC]] == stamps  # stamp = CAM_FRONT stamp
    for (log_ns, det), stamp in zip(msgs[DETECTIONS_TOPIC], stamps):
        assert det.header.frame_id == params.frame_id == "base_link"
        assert log_ns >= stamp  # written when the set was complete
        assert 0 < len(det.detections) <= params.max_detections
        for d in det.detections:
            assert d.header.frame_id == "base_link" and m.stamp_of(d) == stamp
            assert d.results[0].hypothesis.class_id in CLASS_NAMES
            assert d.bbox.size.x > 0 and d.bbox.size.y > 0 and d.bbox.size.z > 0
    for (_, det), (_, vel) in zip(msgs[DETECTIONS_TOPIC], msgs[VELOCITY_TOPIC]):  # same header, one per box
        assert m.stamp_of(vel) == m.stamp_of(det) and vel.header.frame_id == det.header.frame_id
        assert len(vel.velocities) == len(det.detections) and all(v.z == 0.0 for v in vel.velocities)
    from qdbev_core.bag.recorded import read_detections_bag

    paired = read_detections_bag(out)
    assert [t for t, _ in paired.pairs] == stamps and not paired.without_velocity and not paired.unmatched_velocity
    for (t, d), (_, vel) in zip(paired.pairs, msgs[VELOCITY_TOPIC]):
        np.testing.assert_array_equal(d.boxes[:, 7:9], [[v.x, v.y] for v in vel.velocities])
    for _, arr in msgs[MARKERS_TOPIC]:
        assert arr.markers[0].action == 3  # DELETEALL first
        assert all(mk.header.frame_id == "base_link" for mk in arr.markers)

    # `qdbev bag score` of the output bag (detections + velocities read back) = replay's own score
    capsys.readouterr()
    code = main(["bag", "score", str(out), "--source", str(bag), "--json", str(tmp_path / "score.json"),
                 "--viz-dir", str(tmp_path / "viz")])
    text = capsys.readouterr().out
    assert code == 0, text
    scored = json.loads((tmp_path / "score.json").read_text())
    assert scored["key_frames_without_output"] == 0 and scored["without_velocity"] == 0
    assert scored["nd_score"] == summary["nd_score"], text
    assert len(list((tmp_path / "viz").glob("*_bev.png"))) == n and list((tmp_path / "viz").glob("*.mp4"))

    # the bag path hands the model the same frame as the dataset reader (first frame: no history),
    # except that its JPEGs, at least twice the network input here, are decoded at a reduced size
    # with the intrinsics scaled to match (qdbev_core.runtime.codecs.jpeg_reduction)
    import dataclasses

    from qdbev_core.data.rig import scaled_intrinsics
    from qdbev_core.engine import load_engine
    from qdbev_core.runtime.codecs import decode_compressed_image, jpeg_reduction

    engine = load_engine(str(model), score_threshold=0.0, topk=params.max_detections)
    first = reader[scene.first]
    f = jpeg_reduction(first.frame.images[0].shape[:2], tuple(engine.cfg.image_size))
    assert f == 2  # 400x225 images, 64x176 input: the reduced path is what this checks
    reduced = dataclasses.replace(
        first.frame, images=[decode_compressed_image(Path(p).read_bytes(), "jpeg", reduce=f) for p in first.image_paths],
        intrinsics=np.stack([scaled_intrinsics(k, 1.0 / f) for k in first.frame.intrinsics]))
    direct = engine.detect(reduced)
    replayed = paired.pairs[0][1]  # detections + velocities paired by stamp
    assert len(replayed) == len(direct)
    np.testing.assert_array_equal(replayed.labels, direct.labels)
    np.testing.assert_allclose(replayed.scores, direct.scores, atol=1e-5)
    np.testing.assert_allclose(replayed.boxes[:, :6], direct.boxes[:, :6], atol=1e-3)
    np.testing.assert_allclose(replayed.boxes[:, 7:9], direct.boxes[:, 7:9], atol=1e-3)


def test_replay_errors_are_clear(synth_dataroot: Path, tmp_path: Path) -> None:
    from qdbev_core.bag.replay import replay_bag, score_replay
    from qdbev_core.types import Detections

    params = NodeParams.from_file(REPO / "config" / "qdbev.yaml", model="unused")
    with pytest.raises(FileNotFoundError, match="not a rosbag2 folder"):
        replay_bag(tmp_path / "nope", None, params)
    # a bag without images for the node's topics
    from qdbev_core.data.reader import NuScenesReader

    reader = NuScenesReader(synth_dataroot, VERSION, split="synth_val", load_images=False)
    bag = tmp_path / "bag"
    bag_from_nuscenes(synth_dataroot, VERSION, reader.scenes()[0].name, bag, camera_namespace="/elsewhere",
                      nusc=reader.nusc)
    with pytest.raises(ValueError, match="neither set of image topics"):
        replay_bag(bag, None, params)
    # scoring without boxes / without a source / without the dataroot
    src = read_bag_source(bag)
    metrics, note = score_replay({}, src, tmp_path / "eval")
    assert metrics is None and note.startswith("not scored: no detections") and "0/" in note
    assert score_replay({}, None, tmp_path / "eval")[1].startswith("not scored: the bag records no nuScenes source")
    metrics, note = score_replay({k.stamp_ns: Detections() for k in src.key_frames}, src, tmp_path / "eval",
                                 dataroot=tmp_path / "moved")
    assert metrics is None and "pass --dataroot" in note
