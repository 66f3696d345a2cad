"""nuScenes-format reader: frame conversions (pure) and reading a SynthScenes dataroot."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.data.reader import (
    NuScenesReader,
    TABLE_NAMES,
    ego_boxes_to_global,
    global_boxes_to_ego,
    nusc_box_to_ego,
    require_tables,
)
from qdbev_core.geometry import make_transform, matrix_to_quat, quat_to_yaw, wrap_angle, yaw_to_quat
from qdbev_core.types import CAMERA_NAMES

VERSION = "v1.0-mini"


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    b = np.empty((n, 9))
    b[:, 0:2] = rng.uniform(-60, 60, (n, 2))
    b[:, 2] = rng.uniform(-2, 3, n)
    b[:, 3:6] = rng.uniform(0.3, 12, (n, 3))
    b[:, 6] = rng.uniform(-np.pi, np.pi, n)
    b[:, 6][:4] = [np.pi - 1e-9, -np.pi, np.pi / 2, 0.0]  # wrap edge cases
    b[:, 7:9] = rng.uniform(-20, 20, (n, 2))
    return b


def _random_pose(rng: np.random.Generator, roll_pitch: float) -> np.ndarray:
    def rot(axis: int, a: float) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r

    r = rot(2, rng.uniform(-np.pi, np.pi)) @ rot(1, rng.uniform(-roll_pitch, roll_pitch)) @ rot(0, rng.uniform(-roll_pitch, roll_pitch))
    return make_transform(matrix_to_quat(r), [*rng.uniform(-3000, 3000, 2), rng.uniform(-5, 5)])


@pytest.mark.parametrize("roll_pitch", [0.0, 0.05])
def test_ego_global_round_trip_exact(roll_pitch: float) -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        boxes = _random_boxes(rng, 40)
        pose = _random_pose(rng, roll_pitch)
        g = ego_boxes_to_global(boxes, pose)
        back = global_boxes_to_ego(g, pose)
        np.testing.assert_allclose(back[:, [0, 1, 2, 3, 4, 5, 7, 8]], boxes[:, [0, 1, 2, 3, 4, 5, 7, 8]], atol=1e-6)
        assert np.all(np.abs(wrap_angle(back[:, 6] - boxes[:, 6])) < 1e-9)
        assert np.all((back[:, 6] >= -np.pi) & (back[:, 6] < np.pi))
        # and the other way round
        again = ego_boxes_to_global(global_boxes_to_ego(g, pose), pose)
        np.testing.assert_allclose(again[:, [0, 1, 2, 7, 8]], g[:, [0, 1, 2, 7, 8]], atol=1e-6)
        assert np.all(np.abs(wrap_angle(again[:, 6] - g[:, 6])) < 1e-9)


def test_yaw_only_pose_matches_plain_rotation() -> None:
    yaw = 2.5
    pose = make_transform(yaw_to_quat(yaw), [100.0, -50.0, 0.0])
    box = np.array([[10.0, 2.0, 1.0, 4.5, 1.9, 1.6, 3.0, 5.0, 0.0]])
    g = ego_boxes_to_global(box, pose)[0]
    c, s = np.cos(yaw), np.sin(yaw)
    np.testing.assert_allclose(g[0:2], [100 + c * 10 - s * 2, -50 + s * 10 + c * 2], atol=1e-9)
    assert abs(wrap_angle(g[6] - (3.0 + yaw))) < 1e-12
    np.testing.assert_allclose(g[7:9], [5 * c, 5 * s], atol=1e-12)
    np.testing.assert_allclose(g[3:6], box[0, 3:6])


def test_nusc_box_size_is_wlh() -> None:
    pose = make_transform(yaw_to_quat(0.3), [5.0, 6.0, 0.0])
    ego = np.array([3.0, -1.0, 0.8, 4.5, 1.9, 1.6, 0.2, 1.0, -2.0])
    g = ego_boxes_to_global(ego[None], pose)[0]
    back = nusc_box_to_ego(g[0:3], [g[4], g[3], g[5]], yaw_to_quat(g[6]), g[7:9], pose)
    np.testing.assert_allclose(back, ego, atol=1e-9)


def test_empty_boxes() -> None:
    pose = make_transform(yaw_to_quat(1.0), [1.0, 2.0, 3.0])
    assert ego_boxes_to_global(np.zeros((0, 9)), pose).shape == (0, 9)
    assert global_boxes_to_ego(np.zeros((0, 9)), pose).shape == (0, 9)


def test_require_tables_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        require_tables(tmp_path / "nope", VERSION)
    with pytest.raises(FileNotFoundError, match="v1.0-mini"):
        require_tables(tmp_path, VERSION)
    (tmp_path / VERSION).mkdir()
    for t in TABLE_NAMES:
        if t != "ego_pose":
            (tmp_path / VERSION / f"{t}.json").write_text("[]")
    with pytest.raises(FileNotFoundError, match="ego_pose.json"):
        require_tables(tmp_path, VERSION)


# ------------------------------------------------------------------ on a SynthScenes dataroot
@pytest.fixture(scope="module")
def reader(synth_dataroot: Path) -> NuScenesReader:
    return NuScenesReader(synth_dataroot, VERSION, split="synth_val")


def test_split_order_and_len(reader: NuScenesReader, synth_dataroot: Path) -> None:
    splits = json.loads((synth_dataroot / VERSION / "splits.json").read_text())
    scenes = reader.scenes()
    assert [s.name for s in scenes] == splits["synth_val"]
    assert len(reader) == sum(s.num_samples for s in scenes) == len(reader.sample_tokens) > 0
    nusc = reader.nusc
    for sc in scenes:
        toks = reader.sample_tokens[sc.first:sc.first + sc.num_samples]
        stamps = [nusc.get("sample", t)["timestamp"] for t in toks]
        assert stamps == sorted(stamps)
        assert nusc.get("sample", toks[0])["prev"] == ""
    s0, s1 = reader[0], reader[1]
    assert s0.prev_token is None and s1.prev_token == s0.token
    assert s0.scene_name == scenes[0].name == s0.frame.scene
    # every split together = every scene
    train = NuScenesReader(synth_dataroot, VERSION, split="synth_train", load_images=False, nusc=nusc)
    full = NuScenesReader(synth_dataroot, VERSION, load_images=False, nusc=nusc)
    assert sorted(train.sample_tokens + reader.sample_tokens) == sorted(full.sample_tokens)


def test_unknown_split_lists_available(reader: NuScenesReader, synth_dataroot: Path) -> None:
    with pytest.raises(ValueError, match=r"synth_train.*synth_val|synth_val.*synth_train"):
        NuScenesReader(synth_dataroot, VERSION, split="nope", nusc=reader.nusc)


def test_sample_frame_matches_tables(reader: NuScenesReader) -> None:
    nusc = reader.nusc
    s = reader[len(reader) // 2]
    rec = nusc.get("sample", s.token)
    f = s.frame
    assert len(f.images) == 6 and f.intrinsics.shape == (6, 3, 3) and f.cam2ego.shape == (6, 4, 4)
    for i, cam in enumerate(CAMERA_NAMES):
        sd = nusc.get("sample_data", rec["data"][cam])
        assert sd["channel"] == cam
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        assert f.images[i].dtype == np.uint8 and f.images[i].shape == (sd["height"], sd["width"], 3)
        k = np.asarray(cs["camera_intrinsic"])
        np.testing.assert_allclose(f.intrinsics[i], k)
        # principal point inside the image the intrinsics belong to
        assert 0 <= k[0, 2] < sd["width"] and 0 <= k[1, 2] < sd["height"]
        np.testing.assert_allclose(f.cam2ego[i], make_transform(cs["rotation"], cs["translation"]), atol=1e-12)
        if cam == "CAM_FRONT":
            assert f.stamp == pytest.approx(sd["timestamp"] / 1e6)
    lidar = nusc.get("sample_data", rec["data"]["LIDAR_TOP"])
    pose = nusc.get("ego_pose", lidar["ego_pose_token"])
    np.testing.assert_allclose(f.ego2global, make_transform(pose["rotation"], pose["translation"]))
    assert s.timestamp == pytest.approx(rec["timestamp"] / 1e6)


def test_gt_in_ego_frame(reader: NuScenesReader) -> None:
    nusc = reader.nusc
    n_total = 0
    for i in range(0, len(reader), max(1, len(reader) // 4)):
        s = reader[i]
        n = len(s.gt_tokens)
        n_total += n
        assert s.gt_boxes.shape == (n, 9) and s.gt_labels.shape == (n,) and s.gt_num_pts.shape == (n,)
        assert s.gt_labels.dtype == np.int64 and np.all((s.gt_labels >= 0) & (s.gt_labels < len(CLASS_NAMES)))
        assert np.all(np.isfinite(s.gt_boxes))
        assert np.all(np.hypot(s.gt_boxes[:, 0], s.gt_boxes[:, 1]) < 62.0)
        assert np.all(s.gt_boxes[:, 3:6] > 0)
        for j, tok in enumerate(s.gt_tokens):
            ann = nusc.get("sample_annotation", tok)
            w, l, h = ann["size"]
            np.testing.assert_allclose(s.gt_boxes[j, 3:6], [l, w, h])
            g = ego_boxes_to_global(s.gt_boxes[j:j + 1], s.frame.ego2global)[0]
            np.testing.assert_allclose(g[0:3], ann["translation"], atol=1e-6)
            assert abs(wrap_angle(g[6] - quat_to_yaw(ann["rotation"]))) < 1e-6
            v = nusc.box_velocity(tok)[:2]
            if s.gt_velocity_valid[j]:
                np.testing.assert_allclose(g[7:9], v, atol=1e-6)
            else:
                assert np.all(np.isnan(v)) and np.all(s.gt_boxes[j, 7:9] == 0)
            assert s.gt_num_pts[j] == ann["num_lidar_pts"] + ann["num_radar_pts"]
    assert n_total > 0


def test_missing_table_and_image(synth_dataroot: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(synth_dataroot, broken)
    reader = NuScenesReader(broken, VERSION, split="synth_val")
    rec = reader.nusc.get("sample", reader.sample_tokens[0])
    img = broken / reader.nusc.get("sample_data", rec["data"]["CAM_BACK"])["filename"]
    img.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(img.name)):
        reader[0]
    (broken / VERSION / "sample_annotation.json").unlink()
    with pytest.raises(FileNotFoundError, match="sample_annotation.json"):
        NuScenesReader(broken, VERSION)
