"""Validate a nuScenes-format dataroot before training or evaluating on it.

``check_dataroot`` reads the 13 JSON tables itself (not through ``nuscenes.NuScenes``, which stops
at the first broken reference with a bare ``KeyError``/``AssertionError``) and collects every
problem it finds, each with *what* is wrong, *where* (file / table row) and *what to do*:

- tables present and parseable; token references resolve (sample_data -> calibrated_sensor,
  ego_pose, sample; annotations -> instance -> category; scenes -> log; every log covered by a
  map whose mask file exists — ``NuScenes()`` needs all of that to load);
- each sample has key frames of the six cameras and LIDAR_TOP (the evaluator reads the
  LIDAR_TOP key frame's ego pose);
- every key-frame image and LIDAR_TOP file exists (missing non-key-frame sweeps are only
  warnings: qdbev uses key frames);
- calibration is sane: finite numbers, unit rotation quaternions (calibrated sensors and ego
  poses), positive focal lengths, principal point inside the image.

It also counts scenes/samples per split and GT boxes per detection class, in total and within
the class's evaluation radius with > 0 lidar+radar points (the boxes the evaluator scores).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..classes import CLASS_NAMES, EVAL_RANGE_M
from ..types import CAMERA_NAMES
from .reader import LIDAR_CHANNEL, TABLE_NAMES, available_splits, custom_splits, resolve_split

_DETECTION_OF_CATEGORY = {
    "movable_object.barrier": "barrier", "vehicle.bicycle": "bicycle", "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus", "vehicle.car": "car", "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle", "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian", "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian", "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer", "vehicle.truck": "truck",
}
"""Same mapping as ``nuscenes.eval.detection.utils.category_to_detection_name`` (kept local so the
check runs without importing the devkit; ``test_data_check`` asserts they agree)."""

QUAT_TOL = 1e-3
MAX_EXAMPLES = 5


@dataclass
class Problem:
    """One kind of problem: what is wrong, where (up to ``MAX_EXAMPLES`` places), what to do."""

    what: str
    fix: str
    where: list[str] = field(default_factory=list)
    count: int = 0

    def format(self) -> str:
        more = f" (+{self.count - len(self.where)} more)" if self.count > len(self.where) else ""
        lines = [f"- {self.what} [{self.count}x]" if self.count > 1 else f"- {self.what}"]
        for w in self.where:
            lines.append(f"    at {w}")
        if more:
            lines.append(f"    ...{more}")
        lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


@dataclass
class CheckReport:
    """Result of ``check_dataroot``; ``ok`` is True when there are no problems (warnings allowed)."""

    dataroot: str
    version: str
    split: str | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    table_rows: dict[str, int] = field(default_factory=dict)
    splits: dict[str, tuple[int, int]] = field(default_factory=dict)
    """split name -> (scenes, samples) present in the dataset."""
    class_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    """class -> (GT boxes, GT boxes within eval range with > 0 points), over ``split`` or all."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        out = [f"dataroot {self.dataroot}  version {self.version}"]
        if self.table_rows:
            out.append("tables: " + ", ".join(f"{k} {v}" for k, v in self.table_rows.items()))
        if self.splits:
            out.append("")
            out.append(f"{'split':<16}{'scenes':>8}{'samples':>9}")
            for name, (ns, nsmp) in self.splits.items():
                out.append(f"{name:<16}{ns:>8}{nsmp:>9}")
        if self.class_counts:
            out.append("")
            scope = f"split {self.split}" if self.split else "all samples"
            out.append(f"GT boxes per class ({scope}):")
            out.append(f"{'class':<22}{'total':>8}{'scored':>8}   (scored = within eval range, > 0 points)")
            for cls, (tot, scored) in self.class_counts.items():
                out.append(f"{cls:<22}{tot:>8}{scored:>8}")
        for title, items in (("warnings", self.warnings), ("problems", self.problems)):
            if items:
                out.append("")
                out.append(f"{title} ({len(items)}):")
                out.extend(p.format() for p in items)
        out.append("")
        out.append("OK" if self.ok else f"FAILED: {len(self.problems)} kind(s) of problem")
        return "\n".join(out)


class _Collector:
    def __init__(self) -> None:
        self.items: dict[str, Problem] = {}

    def add(self, what: str, where: str, fix: str) -> None:
        p = self.items.setdefault(what, Problem(what=what, fix=fix))
        p.count += 1
        if len(p.where) < MAX_EXAMPLES:
            p.where.append(where)

    def list(self) -> list[Problem]:
        return list(self.items.values())


def _finite(values) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def _unit_quat(q) -> bool:
    return _finite(q) and len(q) == 4 and abs(float(np.linalg.norm(np.asarray(q, dtype=np.float64))) - 1.0) < QUAT_TOL


class _FileIndex:
    """Existence checks by listing each directory once (fast on 10^5-10^6 files)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: dict[str, set[str] | None] = {}

    def exists(self, rel: str) -> bool:
        d, _, name = rel.replace("\\", "/").rpartition("/")
        if d not in self._dirs:
            try:
                self._dirs[d] = {e.name for e in os.scandir(self.root / d) if e.is_file()}
            except OSError:
                self._dirs[d] = None
        names = self._dirs[d]
        return names is not None and name in names


def check_dataroot(dataroot: str | os.PathLike, version: str, split: str | None = None,
                   check_files: bool = True) -> CheckReport:
    """Validate ``<dataroot>/<version>``; never raises for dataset problems, reports them.

    Args:
        dataroot: folder with ``<version>/``, ``samples/``, ``sweeps/``, ``maps/``.
        version: e.g. ``v1.0-mini``.
        split: restrict the class counts to this split (and check that it resolves).
        check_files: check that image / lidar / map files exist.
    """
    root = Path(dataroot)
    rep = CheckReport(dataroot=str(root), version=version, split=split)
    probs, warns = _Collector(), _Collector()
    try:
        _check(root, version, split, check_files, rep, probs, warns)
    finally:
        rep.problems = probs.list()
        rep.warnings = warns.list()
    return rep


@dataclass
class _Tables:
    """The parsed tables of one dataroot, indexed by token, and where problems go."""

    root: Path
    version: str
    table_dir: Path
    rows: dict[str, list[dict]]
    idx: dict[str, dict[str, dict]]
    probs: _Collector
    warns: _Collector

    def ref(self, table: str, token: str, src: str, field_name: str) -> dict | None:
        """The ``table`` row ``token`` that ``src.field_name`` names; a problem when it is missing."""
        row = self.idx[table].get(token)
        if row is None:
            self.probs.add(f"{src}.{field_name} references a missing {table} record",
                           f"{self.table_dir / (src + '.json')} token {token!r}",
                           f"restore the {table} table or fix the reference")
        return row


@dataclass
class _SensorData:
    """What the sample_data pass collects for the later checks (keyed by token)."""

    keyframes: dict[str, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))
    """sample -> channel -> key-frame sample_data row."""
    cam_sizes: dict[str, set[tuple[int, int]]] = field(default_factory=lambda: defaultdict(set))
    """camera calibrated_sensor -> image sizes (width, height) in pixels."""
    lidar_pose: dict[str, dict] = field(default_factory=dict)
    """sample -> ego pose of its LIDAR_TOP key frame."""


def _check(root: Path, version: str, split: str | None, check_files: bool, rep: CheckReport,
           probs: _Collector, warns: _Collector) -> None:
    t = _read_tables(root, version, rep, probs, warns)
    if t is None:
        return
    cs_channel, cs_modality = _check_calibration(t)
    _check_ego_poses(t)
    _check_maps_and_logs(t, check_files)
    _check_scenes_and_samples(t)
    sensors = _check_sample_data(t, check_files, cs_channel, cs_modality)
    _check_principal_points(t, sensors, cs_channel)
    _check_key_frames(t, sensors)
    sample_cls = _annotation_classes(t, sensors)
    scene_names, samples_of_scene = _count_splits(t, rep)
    rep.class_counts = _count_classes(t, split, sample_cls, scene_names, samples_of_scene)


def _read_tables(root: Path, version: str, rep: CheckReport, probs: _Collector, warns: _Collector) -> _Tables | None:
    """All 13 tables parsed and indexed (row counts into ``rep``); None when one cannot be read."""
    table_dir = root / version
    if not root.is_dir():
        probs.add("dataroot does not exist", str(root), "pass the folder that contains the version folder")
        return None
    if not table_dir.is_dir():
        probs.add(f"version folder '{version}' not found", str(table_dir),
                  "check --version, or extract the dataset's metadata archive into the dataroot")
        return None

    tables: dict[str, list[dict]] = {}
    for name in TABLE_NAMES:
        path = table_dir / f"{name}.json"
        if not path.is_file():
            probs.add("missing table", str(path), "re-extract the version's metadata (all 13 tables are required)")
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            probs.add("table is not valid JSON", f"{path}: {exc}", "re-extract or regenerate the table")
            continue
        if not isinstance(data, list) or not all(isinstance(r, dict) and "token" in r for r in data):
            probs.add("table is not a list of records with a 'token'", str(path), "re-extract or regenerate the table")
            continue
        tables[name] = data
        rep.table_rows[name] = len(data)
    if len(tables) != len(TABLE_NAMES):
        return None  # references cannot be checked without every table

    idx = {name: {r["token"]: r for r in rows} for name, rows in tables.items()}
    for name, rows in tables.items():
        if len(idx[name]) != len(rows):
            probs.add("duplicate tokens in table", f"{table_dir / (name + '.json')}",
                      "regenerate the table; tokens must be unique")
    return _Tables(root=root, version=version, table_dir=table_dir, rows=tables, idx=idx, probs=probs, warns=warns)


def _check_calibration(t: _Tables) -> tuple[dict[str, str], dict[str, str]]:
    """Extrinsics and intrinsics of every calibrated sensor; returns its channel and modality by token."""
    probs = t.probs
    cs_channel: dict[str, str] = {}
    cs_modality: dict[str, str] = {}
    for cs in t.rows["calibrated_sensor"]:
        where = f"calibrated_sensor {cs['token']}"
        sensor = t.idx["sensor"].get(cs.get("sensor_token", ""))
        if sensor is None:
            probs.add("calibrated_sensor.sensor_token references a missing sensor record", where,
                      "restore sensor.json or fix the reference")
            continue
        cs_channel[cs["token"]] = sensor.get("channel", "")
        cs_modality[cs["token"]] = sensor.get("modality", "")
        where = f"{where} ({sensor.get('channel', '?')})"
        if not _finite(cs.get("translation")) or len(cs.get("translation", [])) != 3:
            probs.add("calibrated_sensor translation is not 3 finite numbers", where, "fix the extrinsic calibration")
        if not _unit_quat(cs.get("rotation", [])):
            probs.add("calibrated_sensor rotation is not a unit quaternion (w, x, y, z)", where,
                      "normalise / fix the extrinsic rotation")
        if sensor.get("modality") == "camera":
            _check_intrinsics(probs, cs, where)
    return cs_channel, cs_modality


def _check_intrinsics(probs: _Collector, cs: dict, where: str) -> None:
    k = np.asarray(cs.get("camera_intrinsic", []), dtype=np.float64) if _finite(cs.get("camera_intrinsic", [])) else None
    if k is None or k.shape != (3, 3):
        probs.add("camera_intrinsic is not a finite 3x3 matrix", where, "fix the camera intrinsics")
    elif k[0, 0] <= 0 or k[1, 1] <= 0:
        probs.add("camera focal length is not positive", where, "fix fx/fy of the camera intrinsics")
    elif not np.allclose(k[2], [0.0, 0.0, 1.0]):
        probs.add("camera_intrinsic last row is not [0, 0, 1]", where, "fix the camera intrinsics")


def _check_ego_poses(t: _Tables) -> None:
    for ep in t.rows["ego_pose"]:
        if not _finite(ep.get("translation")) or not _unit_quat(ep.get("rotation", [])):
            t.probs.add("ego_pose has a non-finite translation or a non-unit rotation quaternion",
                        f"ego_pose {ep['token']}", "fix the localization data")


def _check_maps_and_logs(t: _Tables, check_files: bool) -> None:
    """Every log covered by a map record whose mask file exists (``NuScenes()`` needs both)."""
    covered = set()
    for m in t.rows["map"]:
        if "log_tokens" not in m:
            t.probs.add("map record has no log_tokens (teaser-format map table)", f"map {m['token']}",
                        "use the v1.0 map.json")
            continue
        covered.update(m["log_tokens"])
        fn = m.get("filename", "")
        if check_files and (not fn or not (t.root / fn).is_file()):
            t.probs.add("map mask file missing (nuscenes.NuScenes refuses to load without it)",
                        str(t.root / fn), "extract the maps/ folder into the dataroot")
    for log in t.rows["log"]:
        if log["token"] not in covered:
            t.probs.add("log is not covered by any map record (nuscenes.NuScenes fails to load)",
                        f"log {log['token']} ({log.get('location', '?')})", "add the log token to a map's log_tokens")


def _check_scenes_and_samples(t: _Tables) -> None:
    for sc in t.rows["scene"]:
        t.ref("log", sc.get("log_token", ""), "scene", "log_token")
        t.ref("sample", sc.get("first_sample_token", ""), "scene", "first_sample_token")
    for s in t.rows["sample"]:
        t.ref("scene", s.get("scene_token", ""), "sample", "scene_token")


def _check_sample_data(t: _Tables, check_files: bool, cs_channel: dict[str, str],
                       cs_modality: dict[str, str]) -> _SensorData:
    """References and files of every sample_data row; collects key frames, image sizes, lidar poses."""
    out = _SensorData()
    files = _FileIndex(t.root)
    for sd in t.rows["sample_data"]:
        where = f"sample_data {sd['token']}"
        cs_tok = sd.get("calibrated_sensor_token", "")
        if t.ref("calibrated_sensor", cs_tok, "sample_data", "calibrated_sensor_token") is None:
            continue
        pose = t.ref("ego_pose", sd.get("ego_pose_token", ""), "sample_data", "ego_pose_token")
        if t.ref("sample", sd.get("sample_token", ""), "sample_data", "sample_token") is None:
            continue
        channel = cs_channel.get(cs_tok, "")
        modality = cs_modality.get(cs_tok, "")
        if modality == "camera":
            out.cam_sizes[cs_tok].add((int(sd.get("width", 0)), int(sd.get("height", 0))))
        if sd.get("is_key_frame"):
            out.keyframes[sd["sample_token"]][channel] = sd
            if channel == LIDAR_CHANNEL and pose is not None:
                out.lidar_pose[sd["sample_token"]] = pose
        if check_files and (modality == "camera" or channel == LIDAR_CHANNEL):
            fn = sd.get("filename", "")
            if not files.exists(fn):
                _missing_file(t, sd, fn, where, channel, "image" if modality == "camera" else "lidar")
    return out


def _missing_file(t: _Tables, sd: dict, fn: str, where: str, channel: str, kind: str) -> None:
    """A missing key-frame file is a problem; a missing sweep only a warning (qdbev uses key frames)."""
    if sd.get("is_key_frame"):
        t.probs.add(f"key-frame {kind} file missing", f"{t.root / fn} ({where}, {channel})",
                    "download/extract the dataset's samples/ folder into the dataroot "
                    "(or regenerate the synthetic dataset)")
    else:
        t.warns.add(f"non-key-frame {kind} sweep file missing (unused by qdbev)",
                    f"{t.root / fn} ({channel})", "extract the sweeps/ folder if other tools need it")


def _check_principal_points(t: _Tables, sensors: _SensorData, cs_channel: dict[str, str]) -> None:
    """Positive image sizes, and each camera's principal point inside its images."""
    for cs_tok, sizes in sensors.cam_sizes.items():
        k = np.asarray(t.idx["calibrated_sensor"][cs_tok].get("camera_intrinsic", []), dtype=np.float64)
        if k.shape != (3, 3) or not np.all(np.isfinite(k)):
            continue
        for w, h in sizes:
            if w <= 0 or h <= 0:
                t.probs.add("camera sample_data has no positive width/height", f"calibrated_sensor {cs_tok}",
                            "fill width/height of the camera sample_data rows")
            elif not (0 <= k[0, 2] < w and 0 <= k[1, 2] < h):
                t.probs.add("principal point outside the image", f"calibrated_sensor {cs_tok} "
                            f"({cs_channel.get(cs_tok)}): c=({k[0, 2]:.1f}, {k[1, 2]:.1f}) image {w}x{h}",
                            "intrinsics and image size disagree (resized images need scaled intrinsics)")


def _check_key_frames(t: _Tables, sensors: _SensorData) -> None:
    """Each sample has key frames of the six cameras and LIDAR_TOP."""
    need = (*CAMERA_NAMES, LIDAR_CHANNEL)
    for s in t.rows["sample"]:
        missing = [c for c in need if c not in sensors.keyframes.get(s["token"], {})]
        if missing:
            t.probs.add("sample lacks key-frame sample_data for some sensors",
                        f"sample {s['token']}: missing {', '.join(missing)}",
                        "every sample needs 6 camera key frames + a LIDAR_TOP key frame")


def _annotation_classes(t: _Tables, sensors: _SensorData) -> dict[str, list[tuple[str, float, int]]]:
    """Checks every annotation; returns sample -> [(detection class, distance to the LIDAR_TOP
    key frame's ego position in metres (inf without one), lidar + radar points)]."""
    probs = t.probs
    sample_cls: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
    for ann in t.rows["sample_annotation"]:
        where = f"sample_annotation {ann['token']}"
        inst = t.ref("instance", ann.get("instance_token", ""), "sample_annotation", "instance_token")
        if t.ref("sample", ann.get("sample_token", ""), "sample_annotation", "sample_token") is None or inst is None:
            continue
        cat = t.ref("category", inst.get("category_token", ""), "instance", "category_token")
        for at in ann.get("attribute_tokens", []):
            t.ref("attribute", at, "sample_annotation", "attribute_tokens")
        if len(ann.get("attribute_tokens", [])) > 1:
            probs.add("annotation has more than one attribute (the evaluator rejects it)", where,
                      "keep a single attribute per annotation")
        if not (_finite(ann.get("translation")) and _finite(ann.get("size")) and _unit_quat(ann.get("rotation", []))):
            probs.add("annotation has non-finite translation/size or a non-unit rotation", where, "fix the annotation")
            continue
        if cat is None:
            continue
        name = _DETECTION_OF_CATEGORY.get(cat.get("name", ""))
        if name is None:
            continue
        pose = sensors.lidar_pose.get(ann["sample_token"])
        dist = math.inf
        if pose is not None:
            dist = math.hypot(ann["translation"][0] - pose["translation"][0],
                              ann["translation"][1] - pose["translation"][1])
        pts = int(ann.get("num_lidar_pts", 0)) + int(ann.get("num_radar_pts", 0))
        sample_cls[ann["sample_token"]].append((name, dist, pts))
    return sample_cls


def _count_splits(t: _Tables, rep: CheckReport) -> tuple[set[str], dict[str, list[str]]]:
    """Scenes / samples per split into ``rep.splits``; returns the scene names and the samples of each."""
    scene_names = {sc["name"] for sc in t.rows["scene"]}
    samples_of_scene: dict[str, list[str]] = defaultdict(list)
    scene_name_of = {sc["token"]: sc["name"] for sc in t.rows["scene"]}
    for s in t.rows["sample"]:
        if s.get("scene_token") in scene_name_of:
            samples_of_scene[scene_name_of[s["scene_token"]]].append(s["token"])
    try:
        custom_splits(t.root, t.version)
        for name, scenes in available_splits(t.root, t.version, scene_names).items():
            missing = [sc for sc in scenes if sc not in scene_names]
            if missing:
                t.probs.add("split names scenes the dataset does not have",
                            f"{t.table_dir / 'splits.json'} split {name!r}: {', '.join(missing[:5])}",
                            "fix splits.json or regenerate the dataset")
            rep.splits[name] = (len(scenes), sum(len(samples_of_scene.get(sc, [])) for sc in scenes))
    except ValueError as exc:
        t.probs.add("splits.json is invalid", str(exc), "fix or delete splits.json")
    return scene_names, samples_of_scene


def _count_classes(t: _Tables, split: str | None, sample_cls: dict[str, list[tuple[str, float, int]]],
                   scene_names: set[str], samples_of_scene: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """class -> (GT boxes, boxes within the class's eval range with > 0 points) over ``split`` or all."""
    counted = [s["token"] for s in t.rows["sample"]]
    if split is not None:
        try:
            scenes = resolve_split(t.root, t.version, split, scene_names)
            counted = [tok for sc in scenes for tok in samples_of_scene.get(sc, [])]
        except ValueError as exc:
            t.probs.add("requested split cannot be resolved", str(exc), "pass one of the available splits")
    totals = {c: [0, 0] for c in CLASS_NAMES}
    for tok in counted:
        for name, dist, pts in sample_cls.get(tok, []):
            totals[name][0] += 1
            if pts > 0 and dist < EVAL_RANGE_M[name]:
                totals[name][1] += 1
    return {c: (v[0], v[1]) for c, v in totals.items()}
