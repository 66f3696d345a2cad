"""Placing objects around the ego route: proposals per class and the no-overlap check.

Objects are placed relative to the ego route (parked in the parking lanes, driving in the lanes,
on the sidewalks, crossing the road) with no overlap with each other or with the ego at any time
of the scene. Units: metres, seconds, radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ...classes import EVAL_RANGE_M, default_attribute
from .config import CLASS_SIZE_STD, CLASS_SIZES, EGO_FOOTPRINT, KEYFRAME_PERIOD_S, SynthConfig
from .palette import object_style
from .world import LANE_W, PARK_W, RoadFrame, SynthObject, World


# ------------------------------------------------------------------------------------------------
# Geometry helpers for placement
# ------------------------------------------------------------------------------------------------


def rects_overlap(c1: NDArray, yaw1: NDArray, h1: NDArray, c2: NDArray, yaw2: NDArray, h2: NDArray) -> NDArray[np.bool_]:
    """Separating-axis test of 2D oriented rectangles (centres ``(...,2)``, half extents ``(...,2)``)."""
    c1, c2 = np.asarray(c1, float), np.asarray(c2, float)
    yaw1, yaw2 = np.broadcast_arrays(np.asarray(yaw1, float), np.asarray(yaw2, float))
    h1, h2 = np.broadcast_to(h1, c1.shape), np.broadcast_to(h2, c2.shape)
    ax1 = np.stack([np.cos(yaw1), np.sin(yaw1)], -1)
    ay1 = np.stack([-np.sin(yaw1), np.cos(yaw1)], -1)
    ax2 = np.stack([np.cos(yaw2), np.sin(yaw2)], -1)
    ay2 = np.stack([-np.sin(yaw2), np.cos(yaw2)], -1)
    d = c2 - c1
    sep = np.zeros(d.shape[:-1], dtype=bool)
    for axis in (ax1, ay1, ax2, ay2):
        r1 = h1[..., 0] * np.abs((ax1 * axis).sum(-1)) + h1[..., 1] * np.abs((ay1 * axis).sum(-1))
        r2 = h2[..., 0] * np.abs((ax2 * axis).sum(-1)) + h2[..., 1] * np.abs((ay2 * axis).sum(-1))
        sep |= np.abs((d * axis).sum(-1)) > r1 + r2
    return ~sep


class Placer:
    """Accepts candidate objects that overlap nothing (ego included) at any time of the scene."""

    MARGIN = 0.25

    def __init__(self, world: World, cfg: SynthConfig):
        self.world = world
        t_end = (world.n_samples - 1) * KEYFRAME_PERIOD_S
        self.tg = np.arange(-0.1, t_end + 0.1 + 1e-9, 0.05)
        ex, ey, eyaw = world.ego.pose(self.tg)
        fwd = EGO_FOOTPRINT[2]
        self.ego_c = np.stack([ex + fwd * np.cos(eyaw), ey + fwd * np.sin(eyaw)], -1)
        self.ego_yaw = eyaw
        self.ego_half = np.array([EGO_FOOTPRINT[0] / 2, EGO_FOOTPRINT[1] / 2])
        self.ts = np.array([world.sample_time(k) for k in range(world.n_samples)])
        sx, sy, _ = world.ego.pose(self.ts)
        self.ego_s = np.stack([sx, sy], -1)
        self.ego_tg = np.stack([ex, ey], -1)
        self.max_range = cfg.max_range_m
        self.pos: list[NDArray] = []
        self.rel: list[NDArray] = []
        self.yaws: list[float] = []
        self.halves: list[NDArray] = []
        self.radius: list[float] = []
        self.coverage = np.zeros(world.n_samples, dtype=np.int64)
        self.objects: list[SynthObject] = []

    def annotated_samples(self, obj: SynthObject) -> list[int]:
        p = obj.xy(self.ts)
        d = np.hypot(*(p - self.ego_s).T)
        u, r = self.world.road.to_road(p)
        ok = (d <= self.max_range) & self.world.road.in_street(u, r)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return []
        return list(range(int(idx[0]), int(idx[-1]) + 1))

    def fits(self, objs: list[SynthObject]) -> bool:
        """True if the group overlaps nothing placed so far, nor the ego, nor itself."""
        placed_pos, placed_rel, placed_yaw, placed_half, placed_rad = [], [], [], [], []
        for obj in objs:
            pos = obj.xy(self.tg)
            rel = np.hypot(*(pos - self.ego_tg).T) <= self.max_range + 15.0
            half = obj.size[:2] / 2 + self.MARGIN / 2
            rad = float(np.hypot(*half))
            # ego
            m = rel & (np.hypot(*(pos - self.ego_c).T) < rad + np.hypot(*self.ego_half) + self.MARGIN)
            if m.any() and rects_overlap(pos[m], obj.yaw, half, self.ego_c[m], self.ego_yaw[m],
                                         self.ego_half + self.MARGIN / 2).any():
                return False
            all_pos = self.pos + placed_pos
            if all_pos:
                P = np.stack(all_pos)  # (M, T, 2)
                R = np.stack(self.rel + placed_rel)
                rads = np.array(self.radius + placed_rad)
                close = (np.hypot(*(P - pos[None]).transpose(2, 0, 1)) < rads[:, None] + rad + self.MARGIN)
                close &= R & rel[None]
                mi, ti = np.nonzero(close)
                if mi.size:
                    yaws = np.array(self.yaws + placed_yaw)[mi]
                    halves = np.stack(self.halves + placed_half)[mi]
                    if rects_overlap(P[mi, ti], yaws, halves, pos[ti], obj.yaw, half).any():
                        return False
            placed_pos.append(pos)
            placed_rel.append(rel)
            placed_yaw.append(obj.yaw)
            placed_half.append(half)
            placed_rad.append(rad)
        return True

    def add(self, objs: list[SynthObject]) -> None:
        for obj in objs:
            obj.index = len(self.objects)
            pos = obj.xy(self.tg)
            self.pos.append(pos)
            self.rel.append(np.hypot(*(pos - self.ego_tg).T) <= self.max_range + 15.0)
            self.yaws.append(obj.yaw)
            half = obj.size[:2] / 2 + self.MARGIN / 2
            self.halves.append(half)
            self.radius.append(float(np.hypot(*half)))
            self.coverage[obj.samples] += 1
            self.objects.append(obj)


# ------------------------------------------------------------------------------------------------
# Object proposals
# ------------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """Where and when one proposal is made."""

    cls: str
    fr: RoadFrame
    """Road the object is placed along."""
    a_e: float
    """The ego's along-road coordinate on ``fr`` at the key frame, metres."""
    t: float
    """Scene time of the key frame, seconds."""
    lim: float
    """Largest along-road distance from the ego, metres."""
    size: NDArray[np.float64]
    """Drawn (length, width, height), metres."""
    moving: bool
    forced: bool


class Proposer:
    def __init__(self, world: World, rng: np.random.Generator):
        self.world = world
        self.rng = rng
        self.road = world.road
        self.frames = world.road.frames()
        self.hr = world.road.half_road
        self.n = world.road.n_lanes
        self.sw = world.road.sidewalk_w

    # -- helpers ---------------------------------------------------------------------------------
    def _size(self, cls: str) -> NDArray[np.float64]:
        mean = np.array(CLASS_SIZES[cls])
        std = CLASS_SIZE_STD[cls]
        f = np.clip(1.0 + std * self.rng.standard_normal(3), 1 - 2 * std, 1 + 2 * std)
        return mean * f

    def _frame(self, k: int) -> tuple[RoadFrame, float]:
        """A road near the ego at key frame ``k`` and the ego's along-road coordinate on it."""
        t = self.world.sample_time(k)
        ex, ey, _ = self.world.ego.pose(t)
        cands, weights = [], []
        for fr in self.frames:
            a, b = fr.to_local(np.array([ex, ey]))
            if abs(b) < 45.0:
                cands.append((fr, a))
                weights.append(3.0 if abs(b) < self.hr else 1.0)
        if not cands:  # cannot happen: the ego is always on a road
            fr = self.frames[0]
            return fr, fr.to_local(np.array([ex, ey]))[0]
        w = np.array(weights) / sum(weights)
        return cands[int(self.rng.choice(len(cands), p=w))]

    def _obj(self, cls: str, xy: NDArray, t: float, vel: NDArray, yaw: float,
             size: NDArray | None = None, parked_cycle: bool = False) -> SynthObject:
        size = self._size(cls) if size is None else size.copy()
        moving = float(np.hypot(*vel)) > 0
        if parked_cycle:
            size[2] *= 0.78
        attr = default_attribute(cls, float(np.hypot(*vel)))
        return SynthObject(index=-1, cls=cls, size=size, p0=np.asarray(xy, float) - np.asarray(vel, float) * t,
                           vel=np.asarray(vel, float), yaw=float(math.remainder(yaw, 2 * math.pi)),
                           style=object_style(self.rng, cls, moving), attribute=attr)

    def _along(self, fr: RoadFrame, a_e: float, lim: float, half_len: float, static: bool) -> float | None:
        for _ in range(8):
            a = a_e + self.rng.uniform(-lim, lim)
            if not static or fr.allowed(a, half_len + 1.0):
                return a
        return None

    # -- proposals -------------------------------------------------------------------------------
    def propose(self, cls: str, k: int, forced: bool) -> list[SynthObject]:
        """Candidate object(s) of class ``cls`` near the ego at key frame ``k`` (a row for barriers
        and cones; empty when no free spot was found). ``forced``: for the class guarantee, so
        within 60% of the class's evaluation range (at most 25 m) and mostly static."""
        rng = self.rng
        fr, a_e = self._frame(k)
        t = self.world.sample_time(k)
        lim = min(0.6 * EVAL_RANGE_M[cls], 25.0) if forced else 48.0
        size = self._size(cls)
        moving_p = {"car": 0.55, "truck": 0.45, "bus": 0.55, "trailer": 0.15, "construction_vehicle": 0.2,
                    "motorcycle": 0.5, "bicycle": 0.45, "pedestrian": 0.65}.get(cls, 0.0)
        moving = (not forced) and rng.random() < moving_p
        if forced and cls == "pedestrian":
            moving = rng.random() < 0.5  # walking on the sidewalk is fine for the guarantee
        slot = _Slot(cls=cls, fr=fr, a_e=a_e, t=t, lim=lim, size=size, moving=moving, forced=forced)
        if cls in ("car", "truck", "bus", "trailer", "construction_vehicle"):
            return self._vehicle(slot)
        if cls in ("motorcycle", "bicycle"):
            return self._cycle(slot)
        if cls == "pedestrian":
            return self._pedestrian(slot)
        if cls == "barrier":
            return self._barrier_row(slot)
        if cls == "traffic_cone":
            return self._cone_row(slot)
        raise ValueError(f"unknown class {cls}")

    def _vehicle(self, s: _Slot) -> list[SynthObject]:
        """Driving in a lane (either direction) or parked in a parking lane (10% facing backwards)."""
        rng, fr, cls, size, n = self.rng, s.fr, s.cls, s.size, self.n
        half_len = size[0] / 2
        if s.moving:
            a, direction = self._along(fr, s.a_e, s.lim, half_len, static=False), self._direction()
            lane = int(rng.integers(n)) if cls != "construction_vehicle" else n - 1
            b = -direction * (LANE_W / 2 + LANE_W * lane) + rng.normal(0, 0.12)
            vmin, vmax = {"car": (3, 14), "truck": (3, 12), "bus": (4, 11), "trailer": (4, 10),
                          "construction_vehicle": (1.5, 4.5)}[cls]
            return self._moving(s, a, b, direction, rng.uniform(vmin, vmax))
        a = self._along(fr, s.a_e, s.lim, half_len, static=True)
        if a is None:
            return []
        side = 1.0 if rng.random() < 0.5 else -1.0
        b = side * (self.hr - PARK_W / 2 + max(0.0, size[1] - PARK_W) / 2) + rng.normal(0, 0.1)
        yaw = fr.phi + (math.pi if side > 0 else 0.0) + rng.normal(0, 0.03)
        if rng.random() < 0.1:
            yaw += math.pi
        return [self._obj(cls, fr.to_global(a, b), s.t, np.zeros(2), yaw, size)]

    def _direction(self) -> float:
        """+1 (with the route's direction) or -1, equally likely."""
        return 1.0 if self.rng.random() < 0.5 else -1.0

    def _moving(self, s: _Slot, a: float, b: float, direction: float, speed: float) -> list[SynthObject]:
        """An object at (``a`` along, ``b`` across) the frame, driving ``speed`` m/s along its axis in
        ``direction``, facing where it goes."""
        yaw = s.fr.phi + (0.0 if direction > 0 else math.pi)
        return [self._obj(s.cls, s.fr.to_global(a, b), s.t, direction * speed * s.fr.e_a, yaw, s.size)]

    def _cycle(self, s: _Slot) -> list[SynthObject]:
        """Riding (bicycles near the kerb, motorcycles in a lane) or parked on the sidewalk."""
        rng, fr, cls, size, n, hr = self.rng, s.fr, s.cls, s.size, self.n, self.hr
        half_len = size[0] / 2
        if s.moving:
            a, direction = self._along(fr, s.a_e, s.lim, half_len, static=False), self._direction()
            if cls == "bicycle":
                b = -direction * (LANE_W * n - 0.8) + rng.normal(0, 0.1)
                speed = rng.uniform(2.5, 6.5)
            else:
                lane = int(rng.integers(n))
                b = -direction * (LANE_W / 2 + LANE_W * lane) + rng.normal(0, 0.3)
                speed = rng.uniform(4.0, 14.0)
            return self._moving(s, a, b, direction, speed)
        a = self._along(fr, s.a_e, s.lim, half_len, static=True)
        if a is None:
            return []
        side = 1.0 if rng.random() < 0.5 else -1.0
        if rng.random() < 0.6:  # perpendicular to the kerb on the sidewalk
            b = side * (hr + 0.3 + size[0] / 2)
            yaw = fr.phi + math.pi / 2 + rng.normal(0, 0.15) + (math.pi if rng.random() < 0.5 else 0.0)
        else:
            b = side * (hr + 0.4 + size[1] / 2)
            yaw = fr.phi + rng.normal(0, 0.1) + (math.pi if rng.random() < 0.5 else 0.0)
        return [self._obj(cls, fr.to_global(a, b), s.t, np.zeros(2), yaw, size, parked_cycle=True)]

    def _pedestrian(self, s: _Slot) -> list[SynthObject]:
        """Crossing the road (often at the crosswalk), walking along or standing on the sidewalk."""
        rng, fr, cls, size, hr = self.rng, s.fr, s.cls, s.size, self.hr
        mode = "walk" if s.moving else "stand"
        if s.moving and rng.random() < 0.35:
            mode = "cross"
        side = 1.0 if rng.random() < 0.5 else -1.0
        if mode == "cross":
            a = self._along(fr, s.a_e, s.lim, 1.0, static=False)
            if fr.forbidden is not None and rng.random() < 0.6:
                lo, hi = fr.forbidden
                a = (lo + 2.5) if abs(s.a_e - lo) < abs(s.a_e - hi) else (hi - 2.5)
                a += rng.normal(0, 0.8)
            b = rng.uniform(-hr, hr)
            direction = 1.0 if rng.random() < 0.5 else -1.0
            speed = rng.uniform(1.0, 1.6)
            vel = direction * speed * fr.e_b
            yaw = fr.phi + direction * math.pi / 2
            return [self._obj(cls, fr.to_global(a, b), s.t, vel, yaw, size)]
        a = self._along(fr, s.a_e, s.lim, 1.0, static=mode == "stand")
        if a is None:
            return []
        b = side * rng.uniform(hr + 0.6, hr + self.sw - 0.5)
        if mode == "walk":
            direction = 1.0 if rng.random() < 0.5 else -1.0
            vel = direction * rng.uniform(0.9, 1.7) * fr.e_a
            yaw = fr.phi + (0.0 if direction > 0 else math.pi)
            return [self._obj(cls, fr.to_global(a, b), s.t, vel, yaw, size)]
        return [self._obj(cls, fr.to_global(a, b), s.t, np.zeros(2), rng.uniform(-math.pi, math.pi), size)]

    def _barrier_row(self, s: _Slot) -> list[SynthObject]:
        """A row of barriers across the kerb or the parking lane."""
        rng, fr, cls, size, hr = self.rng, s.fr, s.cls, s.size, self.hr
        count = int(rng.integers(1, 3)) if s.forced else int(rng.integers(2, 7))
        gap = size[1] + rng.uniform(0.05, 0.4)
        total = gap * count
        a0 = self._along(fr, s.a_e, s.lim, total / 2 + 1.0, static=True)
        if a0 is None:
            return []
        side = 1.0 if rng.random() < 0.5 else -1.0
        b = side * (hr + 0.35) if rng.random() < 0.5 else side * (hr - PARK_W / 2)
        yaw = fr.phi + math.pi / 2 + rng.normal(0, 0.03)
        out = []
        for j in range(count):
            a = a0 - total / 2 + (j + 0.5) * gap
            out.append(self._obj(cls, fr.to_global(a, b + rng.normal(0, 0.03)), s.t, np.zeros(2),
                                 yaw + rng.normal(0, 0.02), size * rng.uniform(0.98, 1.02, 3)))
        return out

    def _cone_row(self, s: _Slot) -> list[SynthObject]:
        """A row of traffic cones on a lane line or in the parking lane."""
        rng, fr, cls, hr = self.rng, s.fr, s.cls, self.hr
        count = int(rng.integers(1, 4)) if s.forced else int(rng.integers(3, 8))
        gap = rng.uniform(1.5, 4.0)
        total = gap * count
        a0 = self._along(fr, s.a_e, s.lim, total / 2 + 1.0, static=True)
        if a0 is None:
            return []
        side = 1.0 if rng.random() < 0.5 else -1.0
        opts = [LANE_W * i for i in range(1, self.n + 1)] + [hr - PARK_W / 2]
        b = side * opts[int(rng.integers(len(opts)))]
        out = []
        for j in range(count):
            a = a0 - total / 2 + (j + 0.5) * gap
            out.append(self._obj(cls, fr.to_global(a, b + rng.normal(0, 0.08)), s.t, np.zeros(2),
                                 rng.uniform(-math.pi, math.pi)))
        return out
