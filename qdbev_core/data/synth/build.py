"""``build_world``: one SynthScenes scene from its dataset config and index (deterministic).

Steps: road layout and ego route (``route.py``), lighting and palette, objects (``placement.py``)
until every key frame has its target density and every class is seen by the lidar within its
evaluation range, then the optional appearance style (``style.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ...classes import CLASS_NAMES, EVAL_RANGE_M
from .config import CLASS_WEIGHTS, SynthConfig, Timing, scene_name
from .lidar import Lidar
from .palette import jitter
from .placement import Placer, Proposer
from .route import add_facades, road_and_ego
from .style import apply_style
from .world import SynthObject, World


def scene_base_us(seed: int, index: int) -> int:
    """Stamp of a scene's first key frame (deterministic, no wall clock)."""
    return 1_535_000_000_000_000 + (int(seed) % 997) * 86_400_000_000 + int(index) * 1_800_000_000


def build_world(cfg: SynthConfig, index: int) -> World:
    """Build scene ``index`` of the dataset ``cfg`` describes (deterministic in seed and index)."""
    rng = np.random.default_rng([int(cfg.seed) & 0xFFFFFFFF, int(index), 0x5CE7E])
    road, ego, u_range = road_and_ego(rng, cfg.samples)
    add_facades(rng, road, u_range)
    sun, palette = lighting_and_palette(rng)
    timing = Timing(base_us=scene_base_us(cfg.seed, index), samples=cfg.samples)
    world = World(seed=int(cfg.seed), index=int(index), name=scene_name(cfg.seed, index), road=road, ego=ego,
                  objects=[], timing=timing, n_samples=cfg.samples, sun=sun, palette=palette,
                  max_range_m=cfg.max_range_m)
    _populate(world, cfg, rng)
    if cfg.style is not None:  # repaint only: its own random stream, geometry untouched
        apply_style(world, cfg.style)
    return world


def lighting_and_palette(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A unit vector towards the sun (global; 30-65 degrees high) and the scene's background colours."""
    sun_az = float(rng.uniform(-math.pi, math.pi))
    sun_el = float(rng.uniform(math.radians(30), math.radians(65)))
    sun = np.array([math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az), math.sin(sun_el)])
    palette = {
        "asphalt": float(rng.uniform(58.0, 92.0)),
        "sidewalk": jitter(rng, np.array([168.0, 165, 158]), 12),
        "grass": jitter(rng, np.array([78.0, 112, 56]), 12),
        "sky_zenith": jitter(rng, np.array([92.0, 138, 205]), 12),
        "sky_horizon": jitter(rng, np.array([206.0, 216, 228]), 8),
        "noise_seed": int(rng.integers(1 << 30)),
    }
    return sun, palette


def _populate(world: World, cfg: SynthConfig, rng: np.random.Generator) -> None:
    placer = Placer(world, cfg)
    prop = Proposer(world, rng)
    k_all = world.n_samples

    def candidate(cls: str, k: int, forced: bool) -> list[SynthObject] | None:
        group = prop.propose(cls, k, forced)
        kept = []
        for obj in group:
            obj.samples = placer.annotated_samples(obj)
            if obj.samples:
                kept.append(obj)
        if not kept or not placer.fits(kept):
            return None
        return kept

    def attempt(cls: str, k: int, forced: bool) -> bool:
        group = candidate(cls, k, forced)
        if group is None:
            return False
        placer.add(group)
        return True

    # 1) every class near the route, at spread-out key frames
    for rep in range(cfg.min_instances_per_class):
        for cls in CLASS_NAMES:
            for _ in range(30):
                k = int(rng.integers(k_all)) if rep else int(rng.integers(max(1, (k_all + 1) // 2)))
                if attempt(cls, k, forced=True):
                    break
    # 2) fill every key frame up to the scene's target density
    target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    names = list(CLASS_WEIGHTS)
    weights = np.array([CLASS_WEIGHTS[c] for c in names])
    weights = weights / weights.sum()
    max_attempts = 60 * k_all + 400
    for _ in range(max_attempts):
        if placer.coverage.min() >= target:
            break
        low = np.flatnonzero(placer.coverage == placer.coverage.min())
        k = int(low[rng.integers(low.size)])
        attempt(names[int(rng.choice(len(names), p=weights))], k, forced=False)

    # 3) make sure every class is seen by the lidar within its evaluation range in this scene
    _ensure_coverage(world, cfg, placer, candidate, rng)

    for obj in placer.objects:
        obj.token = world.token("instance", obj.index)
    world.objects = placer.objects


def _ensure_coverage(world: World, cfg: SynthConfig, placer: Placer, candidate, rng: np.random.Generator,
                     rounds: int = 4) -> None:
    """Add instances of classes that no key frame shows with lidar points within their
    evaluation range (e.g. all hidden behind parked trucks): candidates are accepted only if a
    noise-free scan at their anchor key frame sees them within range."""
    lidar = Lidar(cfg.lidar_azimuth_steps, cfg.lidar_max_range_m)
    k_all = world.n_samples

    def seen_at(k: int, objs: list[SynthObject]) -> list[bool]:
        t = world.sample_time(k)
        _, counts = lidar.scan(world, t, objs, None)
        ex, ey, _ = world.ego.pose(t)
        return [bool(c >= 3 and math.hypot(*(o.xy(t) - np.array([ex, ey]))) < EVAL_RANGE_M[o.cls] - 1.0)
                for o, c in zip(objs, counts)]

    for _ in range(rounds):
        seen: set[str] = set()
        for k in range(k_all):
            objs = [o for o in placer.objects if k in o.samples]
            seen.update(o.cls for o, ok in zip(objs, seen_at(k, objs)) if ok)
        missing = [c for c in CLASS_NAMES if c not in seen]
        if not missing:
            return
        for cls in missing:
            for _ in range(40):
                k = int(rng.integers(k_all))
                group = candidate(cls, k, True)
                if group is None or k not in group[0].samples:
                    continue
                objs = [o for o in placer.objects if k in o.samples] + group
                if any(seen_at(k, objs)[-len(group):]):
                    placer.add(group)
                    break
