"""Read any nuScenes-format dataroot (real v1.0-mini / v1.0-trainval or SynthScenes) as ``Sample``s.

This is the boundary between nuScenes frames and ours (docs/DESIGN.md §3): everything a
``Sample`` carries is in the ego (``base_link``) frame of the sample, except ``frame.ego2global``.

Frames and conventions:

- ``frame.ego2global`` is the ego pose of the sample's **LIDAR_TOP key-frame** ``sample_data``.
  The official detection evaluator measures distances from that pose and we convert ground truth
  and detections between ego and global with the same pose, so a box round-trips exactly. The
  six camera ``sample_data`` rows carry their own ego poses (a few milliseconds apart, the cameras
  fire at different times); ``cam2ego`` is the fixed calibration and ignores that small motion.
- ``frame.stamp`` is the CAM_FRONT key-frame timestamp in seconds; ``Sample.timestamp`` is the
  ``sample`` row's timestamp (the LIDAR_TOP sweep time) in seconds.
- Ground-truth boxes are ``[x, y, z, l, w, h, yaw, vx, vy]`` in ego. nuScenes stores
  ``size = [w, l, h]`` and global-frame ``translation`` / ``rotation``; velocity comes from
  ``NuScenes.box_velocity`` (global, finite differences of the annotation track) and is NaN for
  single-frame tracks: such velocities are set to 0 and flagged in ``gt_velocity_valid``.

Splits: the devkit's built-in names (``mini_train``, ``mini_val``, ``train``, ``val``, ...,
hard-coded scene lists) win over a custom ``<dataroot>/<version>/splits.json`` entry of the same
name — exactly as ``nuscenes.eval.detection.evaluate.DetectionEval`` resolves ``eval_set`` in
devkit 1.2.0 — so the reader and the evaluator always agree on which samples a split holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..classes import CLASS_INDEX
from ..geometry import BOX_DIM, invert_transform, make_transform, quat_to_yaw, transform_boxes, wrap_angle
from ..types import CAMERA_NAMES, Frame

if TYPE_CHECKING:  # pragma: no cover
    from nuscenes import NuScenes

TABLE_NAMES: tuple[str, ...] = (
    "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
    "log", "scene", "sample", "sample_data", "sample_annotation", "map",
)
"""The 13 JSON tables ``nuscenes.NuScenes`` loads from ``<dataroot>/<version>/``."""

LIDAR_CHANNEL = "LIDAR_TOP"


# --------------------------------------------------------------------------------------------
# Pure frame conversions
# --------------------------------------------------------------------------------------------

def _pose_yaw(t: NDArray[np.float64]) -> float:
    return float(np.arctan2(t[1, 0], t[0, 0]))


def ego_boxes_to_global(boxes: ArrayLike, ego2global: ArrayLike) -> NDArray[np.float64]:
    """Ego-frame ``(N, 7|9)`` boxes -> global frame with the sample's ``ego2global`` (4x4).

    Centres are transformed as points with the full pose; yaw gets the pose's yaw
    ``atan2(R[1,0], R[0,0])`` added; velocities ``(vx, vy, 0)`` are rotated with the full
    rotation and their x, y kept. ``global_boxes_to_ego`` is the exact inverse (also for poses
    with roll/pitch). Sizes are unchanged (still ``[l, w, h]``).
    """
    return transform_boxes(np.asarray(ego2global, dtype=np.float64), boxes)


def global_boxes_to_ego(boxes: ArrayLike, ego2global: ArrayLike) -> NDArray[np.float64]:
    """Global-frame ``(N, 7|9)`` boxes -> ego frame; the exact inverse of ``ego_boxes_to_global``.

    The centre uses the inverse pose (``geometry.transform_boxes``). Yaw subtracts the pose's
    yaw and the velocity inverts the 2x2 xy block of the pose rotation, so that a round trip is
    exact even when the pose has small roll/pitch (``transform_boxes`` with the inverse matrix
    would not be: the yaw of ``R^T`` is not minus the yaw of ``R`` then).
    """
    t = np.asarray(ego2global, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64)
    out = transform_boxes(invert_transform(t), b)
    if out.shape[0] == 0:
        return out
    out[:, 6] = wrap_angle(b.reshape(out.shape)[:, 6] - _pose_yaw(t))
    if out.shape[1] >= 9:
        a = t[:2, :2]  # v_global_xy = R[:2,:2] @ v_ego_xy for v_ego = (vx, vy, 0)
        out[:, 7:9] = np.linalg.solve(a, b.reshape(out.shape)[:, 7:9].T).T
    return out


def nusc_box_to_ego(
    translation: ArrayLike, size_wlh: ArrayLike, rotation: ArrayLike, velocity_xy: ArrayLike,
    ego2global: ArrayLike,
) -> NDArray[np.float64]:
    """One nuScenes global box (``size = [w, l, h]``, quaternion ``(w, x, y, z)``) -> ego ``(9,)``."""
    w, l, h = (float(v) for v in size_wlh)
    g = np.array([[*np.asarray(translation, dtype=np.float64)[:3], l, w, h, quat_to_yaw(rotation),
                   *np.asarray(velocity_xy, dtype=np.float64)[:2]]])
    return global_boxes_to_ego(g, ego2global)[0]


# --------------------------------------------------------------------------------------------
# Dataroot checks and split resolution (shared with data check and the evaluator)
# --------------------------------------------------------------------------------------------

def require_tables(dataroot: str | os.PathLike, version: str) -> Path:
    """Raise ``FileNotFoundError`` naming what is missing unless the 13 tables are there.

    Returns the table directory ``<dataroot>/<version>``.
    """
    root = Path(dataroot)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataroot {root} does not exist; pass the folder that contains '{version}/', 'samples/', "
            "'sweeps/' and 'maps/' (e.g. generate one with `qdbev synth`)"
        )
    table_dir = root / version
    if not table_dir.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        hint = f" (versions present: {', '.join(present)})" if present else ""
        raise FileNotFoundError(
            f"version folder {table_dir} not found{hint}; check --version or download/extract the "
            f"'{version}' metadata into {root}"
        )
    missing = [str(table_dir / f"{t}.json") for t in TABLE_NAMES if not (table_dir / f"{t}.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"missing nuScenes table(s): {', '.join(missing)}; re-extract the '{version}' metadata "
            "(all 13 tables are required)"
        )
    return table_dir


def _require_maps(root: Path, table_dir: Path) -> None:
    # NuScenes() asserts that every map mask file exists; turn that into a readable error.
    try:
        maps = json.loads((table_dir / "map.json").read_text())
    except (OSError, ValueError):
        return  # NuScenes() will report the parse error itself
    for m in maps:
        fn = m.get("filename", "")
        if fn and not (root / fn).exists():
            raise FileNotFoundError(
                f"map mask {root / fn} (referenced by {table_dir / 'map.json'}) not found; "
                "extract the maps/ folder of the dataset into the dataroot"
            )


VERSION_OF_BUILTIN_SPLIT: dict[str, str] = {
    "train": "trainval", "val": "trainval", "train_detect": "trainval", "train_track": "trainval",
    "mini_train": "mini", "mini_val": "mini", "test": "test",
}
"""Built-in split -> the version suffix the devkit's ``load_gt`` requires for it."""


def predefined_splits() -> dict[str, list[str]]:
    """The devkit's hard-coded split -> scene names table."""
    from nuscenes.utils.splits import create_splits_scenes

    return create_splits_scenes()


def split_matches_version(split: str, version: str) -> bool:
    """Whether the evaluator accepts built-in ``split`` for ``version`` (custom splits: always)."""
    suffix = VERSION_OF_BUILTIN_SPLIT.get(split)
    return suffix is None or version.endswith(suffix)


def custom_splits(dataroot: str | os.PathLike, version: str) -> dict[str, list[str]]:
    """Splits from ``<dataroot>/<version>/splits.json`` (``{}`` if there is no such file)."""
    path = Path(dataroot) / version / "splits.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError(f"{path} must map split names to lists of scene names")
    return {str(k): [str(s) for s in v] for k, v in data.items()}


def available_splits(dataroot: str | os.PathLike, version: str, scene_names: set[str]) -> dict[str, list[str]]:
    """Split name -> scene names present in the dataset, in split order.

    Built-in devkit splits are listed when they fit the version (``mini_*`` for ``*-mini``, ...)
    and at least one of their scenes is in ``scene_names``; custom ``splits.json`` entries always
    (a built-in name shadows a custom one, as in the evaluator).
    """
    out: dict[str, list[str]] = {}
    for name, scenes in predefined_splits().items():
        if not split_matches_version(name, version):
            continue
        present = [s for s in scenes if s in scene_names]
        if present:
            out[name] = present
    builtin = set(predefined_splits())
    for name, scenes in custom_splits(dataroot, version).items():
        if name not in builtin:
            out[name] = list(scenes)
    return out


def resolve_split(dataroot: str | os.PathLike, version: str, split: str, scene_names: set[str]) -> list[str]:
    """Scene names of ``split`` (in split order) that this dataroot holds.

    Raises ``ValueError`` for an unknown split (listing the available ones) and for a custom
    split that names scenes the dataset does not have.
    """
    predefined = predefined_splits()
    if split in predefined:
        if not split_matches_version(split, version):
            raise ValueError(
                f"built-in split '{split}' belongs to v1.0-{VERSION_OF_BUILTIN_SPLIT[split]}, not {version} "
                "(the nuScenes evaluator refuses that combination); use a matching --version or define a "
                f"custom split in {Path(dataroot) / version / 'splits.json'}"
            )
        scenes = [s for s in predefined[split] if s in scene_names]
        if not scenes:
            avail = sorted(available_splits(dataroot, version, scene_names))
            raise ValueError(
                f"built-in split '{split}' has no scenes in {Path(dataroot) / version}; "
                f"available splits: {', '.join(avail) or '(none)'}"
            )
        return scenes
    custom = custom_splits(dataroot, version)
    if split not in custom:
        avail = sorted(available_splits(dataroot, version, scene_names))
        raise ValueError(
            f"unknown split '{split}' for {Path(dataroot) / version}; available splits: "
            f"{', '.join(avail) or '(none)'} (custom splits come from {Path(dataroot) / version / 'splits.json'})"
        )
    scenes = custom[split]
    missing = [s for s in scenes if s not in scene_names]
    if missing:
        raise ValueError(
            f"split '{split}' in {Path(dataroot) / version / 'splits.json'} names scenes the dataset "
            f"does not have: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return list(scenes)


def load_nuscenes(dataroot: str | os.PathLike, version: str, verbose: bool = False) -> "NuScenes":
    """``nuscenes.NuScenes`` after checking tables and map files (clear ``FileNotFoundError``)."""
    table_dir = require_tables(dataroot, version)
    _require_maps(Path(dataroot), table_dir)
    from nuscenes import NuScenes

    return NuScenes(version=version, dataroot=str(dataroot), verbose=verbose)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

@dataclass
class SceneInfo:
    """One scene of the reader: its samples are ``reader[first : first + num_samples]``."""

    name: str
    token: str
    first: int
    num_samples: int


@dataclass
class Sample:
    """One annotated key frame: the camera ``Frame`` plus ground truth in its ego frame.

    Attributes:
        token: nuScenes ``sample`` token.
        scene_name, scene_token: the scene it belongs to.
        timestamp: ``sample`` timestamp in seconds (LIDAR_TOP key-frame time).
        prev_token: previous sample of the scene, ``None`` at the scene start.
        frame: six images (RGB uint8, ``CAMERA_NAMES`` order; empty list when the reader was
            built with ``load_images=False``), intrinsics, cam2ego, ``ego2global`` = LIDAR_TOP
            key-frame ego pose, ``stamp`` = CAM_FRONT time (s), ``scene`` = scene name.
        gt_boxes: ``(N, 9)`` ego-frame ``[x, y, z, l, w, h, yaw, vx, vy]``.
        gt_labels: ``(N,)`` int64 indices into ``CLASS_NAMES``.
        gt_num_pts: ``(N,)`` lidar + radar points in each box (the evaluator ignores 0-point GT).
        gt_tokens: ``sample_annotation`` tokens.
        gt_attributes: nuScenes attribute name of each box (``""`` when it has none).
        gt_velocity_valid: ``(N,)`` False where the devkit gave NaN velocity (set to 0 here).
        image_paths: absolute paths of the six key-frame images, ``CAMERA_NAMES`` order.
        image_sizes: ``(6, 2)`` int ``(width, height)`` from the ``sample_data`` rows.
    """

    token: str
    scene_name: str
    scene_token: str
    timestamp: float
    prev_token: str | None
    frame: Frame
    gt_boxes: NDArray[np.float64]
    gt_labels: NDArray[np.int64]
    gt_num_pts: NDArray[np.int64]
    gt_tokens: list[str]
    gt_attributes: list[str] = field(default_factory=list)
    gt_velocity_valid: NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0,), dtype=bool))
    image_paths: list[str] = field(default_factory=list)
    image_sizes: NDArray[np.int64] = field(default_factory=lambda: np.zeros((6, 2), dtype=np.int64))


def load_rgb(path: str | os.PathLike) -> NDArray[np.uint8]:
    """Read an image file as ``(H, W, 3)`` RGB uint8; ``FileNotFoundError`` naming the file."""
    import cv2

    p = str(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"image file {p} not found; the dataset's samples/ folder is incomplete "
                                "(run `qdbev data check` for a full list)")
    img = cv2.imread(p, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"image file {p} could not be decoded (corrupt or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class NuScenesReader:
    """Samples of a nuScenes-format dataroot, scene by scene in split order, time order within.

    Args:
        dataroot: folder holding ``<version>/`` (the 13 tables), ``samples/``, ``maps/``.
        version: e.g. ``v1.0-mini``, ``v1.0-trainval``.
        split: built-in devkit split (``mini_val``, ``val``, ...) or a name from
            ``<dataroot>/<version>/splits.json``; ``None`` = every scene in table order.
        load_images: decode the six images per sample (``False`` leaves ``frame.images`` empty).
        nusc: an already loaded ``NuScenes`` of the same dataroot/version to reuse.
    """

    def __init__(self, dataroot: str | os.PathLike, version: str, split: str | None = None,
                 load_images: bool = True, nusc: "NuScenes | None" = None) -> None:
        self.dataroot = Path(dataroot)
        self.version = version
        self.split = split
        self.load_images = load_images
        self.nusc = nusc if nusc is not None else load_nuscenes(self.dataroot, version)
        by_name = {s["name"]: s for s in self.nusc.scene}
        if split is None:
            scene_names = [s["name"] for s in self.nusc.scene]
        else:
            scene_names = resolve_split(self.dataroot, version, split, set(by_name))
        self._scenes: list[SceneInfo] = []
        self._tokens: list[str] = []
        for name in scene_names:
            scene = by_name[name]
            tokens = []
            tok = scene["first_sample_token"]
            while tok:
                tokens.append(tok)
                tok = self.nusc.get("sample", tok)["next"]
            tokens.sort(key=lambda t: self.nusc.get("sample", t)["timestamp"])
            self._scenes.append(SceneInfo(name, scene["token"], len(self._tokens), len(tokens)))
            self._tokens.extend(tokens)
        self._index = {t: i for i, t in enumerate(self._tokens)}
        self._scene_of = {}
        for sc in self._scenes:
            for t in self._tokens[sc.first:sc.first + sc.num_samples]:
                self._scene_of[t] = sc

    # -- collection protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._tokens)

    def __getitem__(self, i: int) -> Sample:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {i} out of range (0..{len(self) - 1})")
        return self.get(self._tokens[i])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def sample_tokens(self) -> list[str]:
        """Sample tokens in reader order."""
        return list(self._tokens)

    def scenes(self) -> list[SceneInfo]:
        """Scenes in split order with the index range of their samples."""
        return list(self._scenes)

    def index_of(self, sample_token: str) -> int:
        return self._index[sample_token]

    # -- per-sample pieces ----------------------------------------------------------------------
    def ego2global(self, sample_token: str) -> NDArray[np.float64]:
        """4x4 ego pose of the sample's LIDAR_TOP key frame (the pose the evaluator uses)."""
        sample = self.nusc.get("sample", sample_token)
        if LIDAR_CHANNEL not in sample["data"]:
            raise ValueError(f"sample {sample_token} has no {LIDAR_CHANNEL} key frame; the evaluator "
                             "needs its ego pose (run `qdbev data check`)")
        sd = self.nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
        pose = self.nusc.get("ego_pose", sd["ego_pose_token"])
        return make_transform(pose["rotation"], pose["translation"])

    def ground_truth(self, sample_token: str, ego2global: NDArray[np.float64] | None = None) -> dict:
        """GT of one sample in its ego frame: boxes, labels, num_pts, tokens, attributes, vel-valid."""
        from nuscenes.eval.detection.utils import category_to_detection_name

        nusc = self.nusc
        t = self.ego2global(sample_token) if ego2global is None else ego2global
        sample = nusc.get("sample", sample_token)
        rows, labels, npts, tokens, attrs, valid = [], [], [], [], [], []
        for ann_tok in sample["anns"]:
            ann = nusc.get("sample_annotation", ann_tok)
            name = category_to_detection_name(ann["category_name"])
            if name is None or name not in CLASS_INDEX:
                continue
            vel = np.asarray(nusc.box_velocity(ann_tok), dtype=np.float64)[:2]
            ok = bool(np.all(np.isfinite(vel)))
            w, l, h = ann["size"]
            rows.append([*ann["translation"], l, w, h, quat_to_yaw(ann["rotation"]),
                         *(vel if ok else (0.0, 0.0))])
            labels.append(CLASS_INDEX[name])
            npts.append(int(ann["num_lidar_pts"]) + int(ann["num_radar_pts"]))
            tokens.append(ann_tok)
            at = ann["attribute_tokens"]
            attrs.append(nusc.get("attribute", at[0])["name"] if at else "")
            valid.append(ok)
        g = np.asarray(rows, dtype=np.float64).reshape(-1, BOX_DIM)
        boxes = global_boxes_to_ego(g, t)
        valid_arr = np.asarray(valid, dtype=bool)
        if boxes.shape[0]:
            boxes[~valid_arr, 7:9] = 0.0
        return {
            "boxes": boxes,
            "labels": np.asarray(labels, dtype=np.int64),
            "num_pts": np.asarray(npts, dtype=np.int64),
            "tokens": tokens,
            "attributes": attrs,
            "velocity_valid": valid_arr,
        }

    def camera_rows(self, sample_token: str) -> list[tuple[dict, dict]]:
        """``(sample_data, calibrated_sensor)`` of the six key-frame cameras, ``CAMERA_NAMES`` order."""
        sample = self.nusc.get("sample", sample_token)
        out = []
        for cam in CAMERA_NAMES:
            if cam not in sample["data"]:
                raise ValueError(f"sample {sample_token} (scene {self._scene_name(sample)}) has no {cam} "
                                 "key frame; every sample needs all six cameras (run `qdbev data check`)")
            sd = self.nusc.get("sample_data", sample["data"][cam])
            cs = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            out.append((sd, cs))
        return out

    def _scene_name(self, sample: dict) -> str:
        return self.nusc.get("scene", sample["scene_token"])["name"]

    def get(self, sample_token: str) -> Sample:
        """The ``Sample`` of a token (of this reader's split or not)."""
        nusc = self.nusc
        sample = nusc.get("sample", sample_token)
        scene = nusc.get("scene", sample["scene_token"])
        ego2global = self.ego2global(sample_token)
        cams = self.camera_rows(sample_token)
        intrinsics = np.stack([np.asarray(cs["camera_intrinsic"], dtype=np.float64).reshape(3, 3)
                               for _, cs in cams])
        cam2ego = np.stack([make_transform(cs["rotation"], cs["translation"]) for _, cs in cams])
        paths = [str(self.dataroot / sd["filename"]) for sd, _ in cams]
        sizes = np.array([[int(sd["width"]), int(sd["height"])] for sd, _ in cams], dtype=np.int64)
        images: list[NDArray[np.uint8]] = []
        if self.load_images:
            for cam, p, (w, h) in zip(CAMERA_NAMES, paths, sizes):
                img = load_rgb(p)
                if img.shape[:2] != (h, w):
                    raise ValueError(f"image {p} ({cam}) is {img.shape[1]}x{img.shape[0]} but its "
                                     f"sample_data row says {w}x{h}; intrinsics would not match")
                images.append(img)
        frame = Frame(
            images=images, intrinsics=intrinsics, cam2ego=cam2ego,
            stamp=float(cams[0][0]["timestamp"]) / 1e6, ego2global=ego2global, scene=scene["name"],
        )
        gt = self.ground_truth(sample_token, ego2global)
        return Sample(
            token=sample_token, scene_name=scene["name"], scene_token=scene["token"],
            timestamp=float(sample["timestamp"]) / 1e6, prev_token=sample["prev"] or None, frame=frame,
            gt_boxes=gt["boxes"], gt_labels=gt["labels"], gt_num_pts=gt["num_pts"], gt_tokens=gt["tokens"],
            gt_attributes=gt["attributes"], gt_velocity_valid=gt["velocity_valid"],
            image_paths=paths, image_sizes=sizes,
        )
