"""The nuScenes JSON tables of a SynthScenes dataset (schema of nuScenes v1.0).

Shared tables (category, attribute, visibility, sensor) have fixed tokens; everything else is
built per scene from the world and the per-key-frame sensor results and merged in scene order.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np

from ...classes import CATEGORY_OF_CLASS, CLASS_NAMES
from ...geometry import yaw_to_quat
from ...types import CAMERA_NAMES
from ..rig import LIDAR_TOP_ROTATION, LIDAR_TOP_TRANSLATION, NUSCENES_RIG, scaled_intrinsics
from .world import World

TABLE_NAMES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
               "sample_annotation", "sample_data", "scene", "sensor", "visibility")
LIDAR = "LIDAR_TOP"
MAP_RESOLUTION = 0.1

CATEGORIES = (
    ("human.pedestrian.adult", "Adult subcategory."),
    ("human.pedestrian.child", "Child subcategory."),
    ("human.pedestrian.wheelchair", "Wheelchairs. If a person is in the wheelchair, include in the annotation."),
    ("human.pedestrian.stroller", "Strollers. If a person is in the stroller, include in the annotation."),
    ("human.pedestrian.personal_mobility", "A small electric or self-propelled vehicle for one person."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.construction_worker", "Construction worker."),
    ("animal", "All animals, e.g. cats, rats, dogs, deer, birds."),
    ("vehicle.car", "Vehicle designed primarily for personal use, e.g. sedans, hatch-backs, SUVs, vans."),
    ("vehicle.motorcycle", "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly."),
    ("vehicle.bicycle", "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds."),
    ("vehicle.bus.bendy", "Bendy bus subcategory. Annotate each section of the bendy bus individually."),
    ("vehicle.bus.rigid", "Rigid bus subcategory."),
    ("vehicle.truck", "Vehicles primarily designed to haul cargo including pick-ups, lorries, trucks."),
    ("vehicle.construction", "Vehicles primarily designed for construction, e.g. cranes, diggers, dozers."),
    ("vehicle.emergency.ambulance", "All types of ambulances."),
    ("vehicle.emergency.police", "All types of police vehicles."),
    ("vehicle.trailer", "Any vehicle trailer, both for trucks, cars and bikes."),
    ("movable_object.barrier", "Temporary road barrier placed in the scene to redirect traffic."),
    ("movable_object.trafficcone", "All types of traffic cones."),
    ("movable_object.pushable_pullable", "Objects that a pedestrian may push or pull, e.g. dollies, carts."),
    ("movable_object.debris", "Movable objects that are left on the driveable surface, e.g. tree branches."),
    ("static_object.bicycle_rack", "Area or device intended to park or secure the bicycles in a row."),
)
ATTRIBUTES = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move."),
    ("vehicle.parked", "Vehicle is stationary (usually for longer duration) with no immediate intent to move."),
    ("cycle.with_rider", "There is a rider on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is NO rider on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The human is sitting or lying down."),
    ("pedestrian.standing", "The human is standing."),
    ("pedestrian.moving", "The human is moving."),
)
VISIBILITY = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)
assert all(CATEGORY_OF_CLASS[c] in {n for n, _ in CATEGORIES} for c in CLASS_NAMES)


def shared_token(kind: str, name: str) -> str:
    """Seed-independent token of a shared row (category, attribute, sensor)."""
    return hashlib.md5(f"qdbev-synth/shared/{kind}/{name}".encode()).hexdigest()


def visibility_level(fraction: float) -> str:
    """nuScenes visibility token of a visible-pixel fraction in [0, 1]."""
    if fraction <= 0.4:
        return "1"
    if fraction <= 0.6:
        return "2"
    if fraction <= 0.8:
        return "3"
    return "4"


def static_tables() -> dict[str, list[dict]]:
    return {
        "category": [{"token": shared_token("category", n), "name": n, "description": d} for n, d in CATEGORIES],
        "attribute": [{"token": shared_token("attribute", n), "name": n, "description": d} for n, d in ATTRIBUTES],
        "visibility": [{"token": t, "level": lv, "description": d} for t, lv, d in VISIBILITY],
        "sensor": [{"token": shared_token("sensor", c), "channel": c, "modality": "camera"} for c in CAMERA_NAMES]
        + [{"token": shared_token("sensor", LIDAR), "channel": LIDAR, "modality": "lidar"}],
    }


def log_name(world: World) -> str:
    """Log file name in nuScenes style (``<vehicle>-<date-time>+0000``)."""
    when = _dt.datetime.fromtimestamp(world.timing.base_us // 1_000_000, tz=_dt.timezone.utc)
    return f"s{world.seed}-{when:%Y-%m-%d-%H-%M-%S}+0000"


def sample_filename(world: World, channel: str, stamp_us: int) -> str:
    ext = "pcd.bin" if channel == LIDAR else "jpg"
    return f"samples/{channel}/{log_name(world)}__{channel}__{stamp_us}.{ext}"


def map_filename(world: World) -> str:
    return f"maps/{world.token('map')}.png"


def _r(v, nd=6) -> list[float]:
    return [round(float(x), nd) for x in v]


def scene_tables(world: World, width: int, height: int, ann_stats: dict[tuple[int, int], tuple[str, int, int]]
                 ) -> dict[str, list[dict]]:
    """Rows of every per-scene table.

    ``ann_stats[(k, object_index)] = (visibility_token, num_lidar_pts, num_radar_pts)``.
    """
    rows: dict[str, list[dict]] = {t: [] for t in TABLE_NAMES}
    _log_and_map_rows(world, rows)
    cs_tok = _calibrated_sensor_rows(world, width, height, rows)
    sample_tok = _sample_rows(world, width, height, cs_tok, rows)
    _scene_row(world, sample_tok, rows)
    _annotation_rows(world, ann_stats, sample_tok, rows)
    return rows


def _log_and_map_rows(world: World, rows: dict[str, list[dict]]) -> None:
    log_tok = world.token("log")
    when = _dt.datetime.fromtimestamp(world.timing.base_us // 1_000_000, tz=_dt.timezone.utc)
    rows["log"].append({"token": log_tok, "logfile": log_name(world), "vehicle": "synth-zoe",
                        "date_captured": f"{when:%Y-%m-%d}", "location": "synth-city"})
    rows["map"].append({"token": world.token("map"), "log_tokens": [log_tok], "category": "semantic_prior",
                        "filename": map_filename(world)})


def _calibrated_sensor_rows(world: World, width: int, height: int, rows: dict[str, list[dict]]) -> dict[str, str]:
    """One calibrated sensor per camera (intrinsics scaled to ``width`` x ``height`` pixels) and
    LIDAR_TOP, one set per log like nuScenes; returns their tokens by channel."""
    tok = world.token
    cs_tok = {}
    for cam in CAMERA_NAMES:
        calib = NUSCENES_RIG[cam]
        cs_tok[cam] = tok("calibrated_sensor", cam)
        k_full = np.array([[calib.fx, 0.0, calib.cx], [0.0, calib.fy, calib.cy], [0.0, 0.0, 1.0]])
        k = scaled_intrinsics(k_full, width / 1600.0, height / 900.0)
        rows["calibrated_sensor"].append({
            "token": cs_tok[cam], "sensor_token": shared_token("sensor", cam),
            "translation": list(calib.translation), "rotation": list(calib.rotation),
            "camera_intrinsic": [_r(row, 9) for row in k],
        })
    cs_tok[LIDAR] = tok("calibrated_sensor", LIDAR)
    rows["calibrated_sensor"].append({
        "token": cs_tok[LIDAR], "sensor_token": shared_token("sensor", LIDAR),
        "translation": list(LIDAR_TOP_TRANSLATION), "rotation": list(LIDAR_TOP_ROTATION), "camera_intrinsic": [],
    })
    return cs_tok


def _sample_rows(world: World, width: int, height: int, cs_tok: dict[str, str],
                 rows: dict[str, list[dict]]) -> list[str]:
    """Samples and, per key frame and channel, its sample_data and ego pose; returns the sample tokens."""
    tok = world.token
    tm = world.timing
    k_all = world.n_samples
    scene_tok = tok("scene")
    sample_tok = [tok("sample", k) for k in range(k_all)]
    channels = list(CAMERA_NAMES) + [LIDAR]
    for k in range(k_all):
        rows["sample"].append({
            "token": sample_tok[k], "timestamp": tm.sample_us(k), "prev": sample_tok[k - 1] if k > 0 else "",
            "next": sample_tok[k + 1] if k + 1 < k_all else "", "scene_token": scene_tok,
        })
        for ch in channels:
            stamp = tm.sample_us(k) if ch == LIDAR else tm.camera_us(k, ch)
            sd_tok = tok("sample_data", ch, k)
            ep_tok = tok("ego_pose", ch, k)
            x, y, yaw = (float(v) for v in world.ego.pose(tm.rel_s(stamp)))
            rows["ego_pose"].append({"token": ep_tok, "timestamp": stamp, "rotation": _r(yaw_to_quat(yaw), 9),
                                     "translation": _r([x, y, 0.0])})
            is_cam = ch != LIDAR
            rows["sample_data"].append({
                "token": sd_tok, "sample_token": sample_tok[k], "ego_pose_token": ep_tok,
                "calibrated_sensor_token": cs_tok[ch], "timestamp": stamp,
                "fileformat": "jpg" if is_cam else "pcd", "is_key_frame": True,
                "height": height if is_cam else 0, "width": width if is_cam else 0,
                "filename": sample_filename(world, ch, stamp),
                "prev": tok("sample_data", ch, k - 1) if k > 0 else "",
                "next": tok("sample_data", ch, k + 1) if k + 1 < k_all else "",
            })
    return sample_tok


def _scene_row(world: World, sample_tok: list[str], rows: dict[str, list[dict]]) -> None:
    rows["scene"].append({
        "token": world.token("scene"), "log_token": world.token("log"), "nbr_samples": world.n_samples,
        "first_sample_token": sample_tok[0], "last_sample_token": sample_tok[-1], "name": world.name,
        "description": f"SynthScenes seed {world.seed} scene {world.index}: ego {world.ego.kind}, "
                       f"{world.road.n_lanes} lane(s) per direction"
                       + (", intersection" if world.road.cross_u is not None else ""),
    })


def _annotation_rows(world: World, ann_stats: dict[tuple[int, int], tuple[str, int, int]], sample_tok: list[str],
                     rows: dict[str, list[dict]]) -> None:
    """Instances, and their annotations grouped by sample (key frame order)."""
    tok = world.token
    attr_tok = {n: shared_token("attribute", n) for n, _ in ATTRIBUTES}
    cat_tok = {n: shared_token("category", n) for n, _ in CATEGORIES}
    anns_by_sample: dict[int, list[dict]] = {k: [] for k in range(world.n_samples)}
    for obj in world.objects:
        ks = obj.samples
        ann_toks = [tok("sample_annotation", obj.index, k) for k in ks]
        rows["instance"].append({
            "token": obj.token, "category_token": cat_tok[CATEGORY_OF_CLASS[obj.cls]], "nbr_annotations": len(ks),
            "first_annotation_token": ann_toks[0], "last_annotation_token": ann_toks[-1],
        })
        for j, k in enumerate(ks):
            vis, n_lidar, n_radar = ann_stats[(k, obj.index)]
            box = obj.box(world.sample_time(k))
            anns_by_sample[k].append({
                "token": ann_toks[j], "sample_token": sample_tok[k], "instance_token": obj.token,
                "visibility_token": vis, "attribute_tokens": [attr_tok[obj.attribute]] if obj.attribute else [],
                "translation": _r(box[:3]), "size": _r([box[4], box[3], box[5]], 4),
                "rotation": _r(yaw_to_quat(box[6]), 9),
                "prev": ann_toks[j - 1] if j > 0 else "", "next": ann_toks[j + 1] if j + 1 < len(ks) else "",
                "num_lidar_pts": int(n_lidar), "num_radar_pts": int(n_radar),
            })
    for k in range(world.n_samples):
        rows["sample_annotation"].extend(anns_by_sample[k])


def write_map(world: World, root: Path) -> None:
    """Drivable-area mask (0.1 m/pixel, global origin at the bottom-left) of the scene's roads."""
    road = world.road
    xmax = float(world.ego.x.max()) + 160.0
    ymax = float(world.ego.y.max()) + 160.0
    w = int(math.ceil(xmax / MAP_RESOLUTION))
    h = int(math.ceil(ymax / MAP_RESOLUTION))
    mask = np.zeros((h, w), dtype=np.uint8)
    hr = road.half_road
    span = 2.0 * (xmax + ymax)
    u_e, _ = road.to_road(np.stack([world.ego.x, world.ego.y], -1))
    centre_u = float(np.mean(u_e))
    quads = [road.to_global(np.array([centre_u - span, centre_u + span, centre_u + span, centre_u - span]),
                            np.array([-hr, -hr, hr, hr]))]
    if road.cross_u is not None:
        cu = road.cross_u
        quads.append(road.to_global(np.array([cu - hr, cu + hr, cu + hr, cu - hr]),
                                    np.array([-span, -span, span, span])))
    for q in quads:  # one call per road: fillPoly fills overlapping polygons even-odd
        px = q[:, 0] / MAP_RESOLUTION
        py = h - q[:, 1] / MAP_RESOLUTION
        cv2.fillPoly(mask, [np.round(np.stack([px, py], -1) * 16).astype(np.int32)], 255,
                     lineType=cv2.LINE_8, shift=4)
    path = root / map_filename(world)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError("PNG encoding of the map mask failed")
    path.write_bytes(buf.tobytes())


def write_tables(table_dir: Path, tables: dict[str, list[dict]]) -> None:
    table_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLE_NAMES:
        with open(table_dir / f"{name}.json", "w", encoding="utf-8") as fh:
            json.dump(tables[name], fh, indent=0, separators=(",", ":"))
            fh.write("\n")
