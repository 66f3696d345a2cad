"""Scene-by-scene generation of a SynthScenes dataset and the dataset-level bookkeeping."""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ...classes import CLASS_NAMES, EVAL_RANGE_M
from ...types import CAMERA_NAMES
from .build import build_world
from .config import GENERATOR_VERSION, SynthConfig, scene_name
from .lidar import Lidar
from .render import Renderer
from .tables import LIDAR, TABLE_NAMES, sample_filename, scene_tables, static_tables, visibility_level, write_map, write_tables
from .world import World

SPLIT_NAMES = ("synth_train", "synth_val")
_VEHICLES = {"car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle"}


class SynthCoverageError(ValueError):
    """Some class has no annotation with points within its evaluation range in some split."""


@dataclass
class SceneResult:
    index: int
    name: str
    kind: str
    n_objects: int
    tables: dict[str, list[dict]]
    # one (class, instance token, has lidar/radar points, distance to the key-frame ego) per annotation
    annotations: list[tuple[str, str, bool, float]]


def _seed32(seed: int) -> int:
    return int(seed) & 0xFFFFFFFF


def sensor_noise_seed(world: World, k: int, cam_index: int) -> list[int]:
    return [_seed32(world.seed), world.index, k, cam_index, 0xCA3]


def render_and_scan(world: World, cfg: SynthConfig, renderer: Renderer, lidar: Lidar, k: int,
                    write: bool = True) -> dict[int, tuple[str, int, int]]:
    """Render the six cameras and the lidar of key frame ``k``; write the files when ``write``.

    Returns ``{object_index: (visibility_token, num_lidar_pts, num_radar_pts)}``.
    """
    objs = world.objects_at(k)
    t_s = world.sample_time(k)
    vis_px = np.zeros(len(objs), dtype=np.int64)
    tot_px = np.zeros(len(objs), dtype=np.int64)
    root = Path(cfg.out)
    for ci, cam in enumerate(CAMERA_NAMES):
        stamp = world.timing.camera_us(k, cam)
        t_c = world.timing.rel_s(stamp)
        res = renderer.render(cam, t_c, objs, t_obj=t_s if cfg.objects_at_sample_time else t_c,
                              noise_seed=sensor_noise_seed(world, k, ci))
        vis_px += res.visible
        tot_px += res.total
        if write:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(res.image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            path = root / sample_filename(world, cam, stamp)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.tobytes())
    rng = np.random.default_rng([_seed32(world.seed), world.index, k, 0x11DA2])
    points, counts = lidar.scan(world, t_s, objs, rng)
    if write:
        path = root / sample_filename(world, LIDAR, world.timing.sample_us(k))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(points.astype(np.float32).tobytes())
    ex, ey, _ = world.ego.pose(t_s)
    out = {}
    for i, obj in enumerate(objs):
        frac = float(vis_px[i]) / float(tot_px[i]) if tot_px[i] > 0 else 0.0
        n_lidar = int(counts[i])
        n_radar = 0
        dist = math.hypot(*(obj.xy(t_s) - np.array([ex, ey])))
        if n_lidar > 0 and dist < 60.0:
            lam = (2.5 if obj.cls in _VEHICLES else 0.4) * (1.0 - dist / 60.0)
            n_radar = int(rng.poisson(lam))
        out[obj.index] = (visibility_level(frac), n_lidar, n_radar)
    return out


def generate_scene(cfg: SynthConfig, index: int, on_sample: Callable[[], None] | None = None) -> SceneResult:
    """Build, render and write scene ``index``; return its table rows."""
    world = build_world(cfg, index)
    width, height = cfg.image_size()
    renderer = Renderer(world, width, height)
    lidar = Lidar(cfg.lidar_azimuth_steps, cfg.lidar_max_range_m)
    ann_stats: dict[tuple[int, int], tuple[str, int, int]] = {}
    for k in range(world.n_samples):
        for oi, stats in render_and_scan(world, cfg, renderer, lidar, k).items():
            ann_stats[(k, oi)] = stats
        if on_sample is not None:
            on_sample()
    write_map(world, Path(cfg.out))
    tables = scene_tables(world, width, height, ann_stats)
    ego = {}
    for k in range(world.n_samples):
        x, y, _ = world.ego.pose(world.sample_time(k))
        ego[world.token("sample", k)] = (float(x), float(y))
    inst_cls = {o.token: o.cls for o in world.objects}
    anns = []
    for a in tables["sample_annotation"]:
        ex, ey = ego[a["sample_token"]]
        d = math.hypot(a["translation"][0] - ex, a["translation"][1] - ey)
        anns.append((inst_cls[a["instance_token"]], a["instance_token"],
                     a["num_lidar_pts"] + a["num_radar_pts"] > 0, d))
    return SceneResult(index=index, name=world.name, kind=world.ego.kind, n_objects=len(world.objects),
                       tables=tables, annotations=anns)


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _prepare_out(root: Path, table_dir: Path) -> None:
    if table_dir.exists() and any(table_dir.iterdir()):
        if not (table_dir / "synth_meta.json").is_file():
            raise ValueError(f"{table_dir} exists and is not a SynthScenes dataset; choose another --out")
        shutil.rmtree(table_dir)
        for ch in (*CAMERA_NAMES, LIDAR):
            shutil.rmtree(root / "samples" / ch, ignore_errors=True)
        shutil.rmtree(root / "maps", ignore_errors=True)
    table_dir.mkdir(parents=True, exist_ok=True)


def _coverage(results: list[SceneResult], split_of: dict[str, str]) -> dict[str, dict[str, dict[str, int]]]:
    counts = {s: {c: {"annotations": 0, "instances": 0, "with_points_in_eval_range": 0} for c in CLASS_NAMES}
              for s in SPLIT_NAMES}
    for res in results:
        split = split_of[res.name]
        seen = set()
        for cls, inst, has_pts, dist in res.annotations:
            c = counts[split][cls]
            c["annotations"] += 1
            if inst not in seen:
                seen.add(inst)
                c["instances"] += 1
            if has_pts and dist < EVAL_RANGE_M[cls]:
                c["with_points_in_eval_range"] += 1
    return counts


def generate_dataset(cfg: SynthConfig) -> Path:
    """Generate the dataset ``cfg`` describes; returns the dataroot (``cfg.out``).

    Raises ``ValueError`` for configs that cannot make both splits, and
    ``SynthCoverageError`` (a ``ValueError``) when some class ends up without an annotation
    with points within its evaluation range in some split (the tables are still written).
    """
    from tqdm import tqdm

    if cfg.scenes < 2:
        raise ValueError("need at least 2 scenes (synth_train and synth_val each need one)")
    if cfg.n_val >= cfg.scenes:
        raise ValueError(f"val_fraction {cfg.val_fraction} leaves no training scene out of {cfg.scenes}")
    root = Path(cfg.out)
    table_dir = root / cfg.version
    _prepare_out(root, table_dir)

    results: list[SceneResult] = []
    with tqdm(total=cfg.scenes * cfg.samples, disable=not cfg.progress, desc="synth", unit="sample") as bar:
        if cfg.workers <= 1 or cfg.scenes == 1:
            for i in range(cfg.scenes):
                results.append(generate_scene(cfg, i, on_sample=lambda: bar.update(1)))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(cfg.workers, cfg.scenes), mp_context=ctx,
                                     initializer=_worker_init) as pool:
                futs = [pool.submit(generate_scene, cfg, i) for i in range(cfg.scenes)]
                for fut in as_completed(futs):
                    results.append(fut.result())
                    bar.update(cfg.samples)
    results.sort(key=lambda r: r.index)

    tables = static_tables()
    for name in TABLE_NAMES:
        tables.setdefault(name, [])
    for res in results:
        for name, rows in res.tables.items():
            tables[name].extend(rows)
    names = [scene_name(cfg.seed, i) for i in range(cfg.scenes)]
    n_train = cfg.scenes - cfg.n_val
    splits = {"synth_train": names[:n_train], "synth_val": names[n_train:]}
    split_of = {n: s for s, ns in splits.items() for n in ns}
    counts = _coverage(results, split_of)
    missing = [f"{cls} in {split}" for split in SPLIT_NAMES for cls in CLASS_NAMES
               if counts[split][cls]["with_points_in_eval_range"] == 0]

    write_tables(table_dir, tables)
    (table_dir / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")
    meta = {
        "generator": GENERATOR_VERSION,
        "config": cfg.content_dict(),
        "image_size": list(cfg.image_size()),
        "splits": splits,
        "counts": counts,
        "scenes": [{"name": r.name, "ego": r.kind, "objects": r.n_objects,
                    "annotations": len(r.annotations)} for r in results],
        "coverage_ok": not missing,
    }
    (table_dir / "synth_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if missing:
        raise SynthCoverageError(
            "no annotation with lidar/radar points within the evaluation range for: " + ", ".join(missing)
            + f" (tables written to {table_dir}); use more --scenes/--samples or another --seed")
    return root
