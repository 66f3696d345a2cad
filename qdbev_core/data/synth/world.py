"""The world of one SynthScenes scene: road layout, ego trajectory and the objects.

Everything lives in a flat global frame (z = 0 is the ground). A scene has a straight main road
(``u`` along it, ``r`` to its left) and, usually, a perpendicular cross road at ``u = cross_u``;
the ego starts in the right-most lane of the main road and either drives straight (possibly
changing lanes) or turns into the cross road, with a simple kinematic speed profile (cruise,
slow-downs for turns, stops). Buildings line both roads. Objects are placed relative to the ego
route (parked in the parking lanes, driving in the lanes, on the sidewalks, crossing the road)
with no overlaps with each other or with the ego at any time, and every object moves in a
straight line at constant velocity, so ``NuScenes.box_velocity`` (a centred difference of the
annotated positions) recovers the true velocity exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ...classes import CLASS_NAMES, EVAL_RANGE_M, default_attribute
from .config import (
    CLASS_SIZE_STD,
    CLASS_SIZES,
    CLASS_WEIGHTS,
    EGO_FOOTPRINT,
    KEYFRAME_PERIOD_S,
    SynthConfig,
    Timing,
    make_token,
    scene_name,
)

LANE_W = 3.5
PARK_W = 2.5


def _smoothstep(x: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


# ------------------------------------------------------------------------------------------------
# Road layout
# ------------------------------------------------------------------------------------------------


@dataclass
class Facade:
    """A row of building fronts along one street side: segment boundaries, heights, colours."""

    bounds: NDArray[np.float64]  # (S+1,) along-street coordinate of segment boundaries
    heights: NDArray[np.float64]  # (S,)
    colors: NDArray[np.float64]  # (S, 3) RGB 0..255

    def lookup(self, a: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """(height, segment index) at along-street coordinates ``a`` (0 height outside)."""
        idx = np.searchsorted(self.bounds, a, side="right") - 1
        inside = (idx >= 0) & (idx < len(self.heights))
        idx_c = np.clip(idx, 0, len(self.heights) - 1)
        return np.where(inside, self.heights[idx_c], 0.0), idx_c


@dataclass
class Road:
    """Main road along ``u`` (centre line ``r = 0``) and an optional cross road at ``u = cross_u``."""

    origin: NDArray[np.float64]  # global xy of (u, r) = (0, 0)
    theta: float  # global yaw of +u
    n_lanes: int  # lanes per direction
    sidewalk_w: float
    setback: float
    cross_u: float | None
    facades: dict[str, Facade] = field(default_factory=dict)

    @property
    def half_road(self) -> float:
        """Half width of the carriageway incl. parking lanes (kerb to centre line)."""
        return self.n_lanes * LANE_W + PARK_W

    @property
    def facade_dist(self) -> float:
        """Distance of the building fronts from a road's centre line."""
        return self.half_road + self.sidewalk_w + self.setback

    def axes(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        e_u = np.array([math.cos(self.theta), math.sin(self.theta)])
        return e_u, np.array([-e_u[1], e_u[0]])

    def to_road(self, xy: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        e_u, e_r = self.axes()
        d = np.asarray(xy, dtype=np.float64) - self.origin
        return d @ e_u, d @ e_r

    def to_global(self, u: NDArray[np.float64], r: NDArray[np.float64]) -> NDArray[np.float64]:
        e_u, e_r = self.axes()
        u = np.asarray(u, dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        return self.origin + u[..., None] * e_u + r[..., None] * e_r

    def in_street(self, u: NDArray[np.float64], r: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether road coordinates lie between the building fronts (not inside a block)."""
        f = self.facade_dist
        ok = np.abs(r) < f
        if self.cross_u is not None:
            ok = ok | (np.abs(np.asarray(u) - self.cross_u) < f)
        return ok

    def frames(self) -> list["RoadFrame"]:
        """Placement frames of the main road and (if any) the cross road."""
        hr = self.half_road
        out = [RoadFrame("main", self.origin.copy(), self.theta,
                         None if self.cross_u is None else (self.cross_u - hr - 5.0, self.cross_u + hr + 5.0))]
        if self.cross_u is not None:
            e_u, _ = self.axes()
            out.append(RoadFrame("cross", self.origin + self.cross_u * e_u, self.theta + math.pi / 2,
                                 (-hr - 5.0, hr + 5.0)))
        return out


@dataclass
class RoadFrame:
    """Coordinates along one road: ``a`` along it, ``b`` to its left, origin on its centre line."""

    name: str
    origin: NDArray[np.float64]
    phi: float
    forbidden: tuple[float, float] | None  # a-interval of the crossing road (incl. crosswalks)

    @property
    def e_a(self) -> NDArray[np.float64]:
        return np.array([math.cos(self.phi), math.sin(self.phi)])

    @property
    def e_b(self) -> NDArray[np.float64]:
        return np.array([-math.sin(self.phi), math.cos(self.phi)])

    def to_global(self, a: float, b: float) -> NDArray[np.float64]:
        return self.origin + a * self.e_a + b * self.e_b

    def to_local(self, xy: NDArray[np.float64]) -> tuple[float, float]:
        d = np.asarray(xy, dtype=np.float64) - self.origin
        return float(d @ self.e_a), float(d @ self.e_b)

    def allowed(self, a: float, half_len: float) -> bool:
        if self.forbidden is None:
            return True
        lo, hi = self.forbidden
        return a + half_len < lo or a - half_len > hi


# ------------------------------------------------------------------------------------------------
# Ego trajectory
# ------------------------------------------------------------------------------------------------


@dataclass
class EgoTrajectory:
    """Dense ego poses (ground-level origin under the rear axle) over scene time in seconds."""

    t: NDArray[np.float64]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    yaw: NDArray[np.float64]  # unwrapped
    speed: NDArray[np.float64]
    kind: str = "straight"

    def pose(self, t: float | NDArray[np.float64]) -> tuple:
        """``(x, y, yaw)`` at time(s) ``t`` (linear interpolation)."""
        return (np.interp(t, self.t, self.x), np.interp(t, self.t, self.y), np.interp(t, self.t, self.yaw))

    def matrix(self, t: float) -> NDArray[np.float64]:
        """4x4 ego -> global transform at time ``t``."""
        x, y, yaw = (float(v) for v in self.pose(t))
        m = np.eye(4)
        c, s = math.cos(yaw), math.sin(yaw)
        m[:2, :2] = [[c, -s], [s, c]]
        m[0, 3], m[1, 3] = x, y
        return m

    def shift(self, dxy: NDArray[np.float64]) -> None:
        self.x = self.x + dxy[0]
        self.y = self.y + dxy[1]


def _ego_path(rng: np.random.Generator, n_lanes: int, s_turn: float, kind: str, s_max: float):
    """Dense path (s, u, r, heading) in road coordinates and the cross road position it implies."""
    ds = 0.05
    s = np.arange(0.0, s_max + ds, ds)
    r_e = -(LANE_W * (n_lanes - 1) + LANE_W / 2)
    heading = np.zeros_like(s)
    if kind in ("right", "left"):
        r_min = rng.uniform(7.0, 11.0) if kind == "right" else 2 * abs(r_e) + rng.uniform(4.0, 9.0)
        length = 1.5 * (math.pi / 2) * r_min
        sign = -1.0 if kind == "right" else 1.0
        heading = sign * (math.pi / 2) * _smoothstep((s - s_turn) / length)
    du = np.cos(heading)
    dr = np.sin(heading)
    u = np.concatenate([[0.0], np.cumsum(0.5 * (du[1:] + du[:-1]) * ds)])
    r = r_e + np.concatenate([[0.0], np.cumsum(0.5 * (dr[1:] + dr[:-1]) * ds)])
    cross_u = None
    if kind == "right":
        cross_u = float(u[-1] + abs(r_e))
    elif kind == "left":
        cross_u = float(u[-1] - abs(r_e))
    elif kind == "lane_change":
        l_lc = rng.uniform(35.0, 60.0)
        r = r + LANE_W * _smoothstep((s - s_turn) / l_lc)
    if kind in ("lane_change", "straight"):
        heading = np.arctan2(np.gradient(r, ds), np.gradient(u, ds))
    turn_span = (s_turn, s_turn + (1.5 * (math.pi / 2) * r_min if kind in ("right", "left") else 0.0))
    return s, u, r, heading, cross_u, turn_span


def _speed_profile(rng: np.random.Generator, t: NDArray[np.float64], v_cruise: float,
                   turn_span: tuple[float, float], v_turn: float, stop_s: float | None,
                   wait_s: float, s0: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Kinematic speed along the path: accelerate/brake towards the allowed speed at each s."""
    a_acc, a_brake, a_plan = 1.5, 3.0, 2.0
    dt = t[1] - t[0]
    s_arr = np.empty_like(t)
    v_arr = np.empty_like(t)
    s, v = s0, v_cruise
    stopped_since: float | None = None
    stop_done = stop_s is None
    for i, ti in enumerate(t):
        lim = v_cruise
        if turn_span[1] > turn_span[0]:
            if s < turn_span[0]:
                lim = min(lim, math.sqrt(v_turn ** 2 + 2 * a_plan * (turn_span[0] - s)))
            elif s <= turn_span[1]:
                lim = min(lim, v_turn)
        if not stop_done:
            rem = stop_s - s
            lim = min(lim, math.sqrt(2 * a_plan * max(rem, 0.0)))
            if rem < 0.5 and v < 0.05:
                if stopped_since is None:
                    stopped_since = ti
                if ti - stopped_since >= wait_s:
                    stop_done = True
                lim = 0.0
        if i == 0:
            v = min(v, lim)
        elif v < lim:
            v = min(v + a_acc * dt, lim)
        else:
            v = max(v - a_brake * dt, lim)
        v = min(max(v, 0.0), 15.0)
        s_arr[i] = s
        v_arr[i] = v
        s += v * dt
    return s_arr, v_arr


# ------------------------------------------------------------------------------------------------
# Objects
# ------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class SynthObject:
    """One annotated object: an upright box moving at constant velocity (``xy(t) = p0 + vel * t``)."""

    index: int
    cls: str
    size: NDArray[np.float64]  # (l, w, h)
    p0: NDArray[np.float64]  # global xy at scene time 0 (first key frame)
    vel: NDArray[np.float64]  # global (vx, vy) m/s
    yaw: float
    style: dict = field(default_factory=dict)
    attribute: str = ""
    token: str = ""  # instance token
    samples: list[int] = field(default_factory=list)  # key frames where it is annotated

    @property
    def speed(self) -> float:
        return float(np.hypot(*self.vel))

    def xy(self, t: float | NDArray[np.float64]) -> NDArray[np.float64]:
        t = np.asarray(t, dtype=np.float64)
        return self.p0 + t[..., None] * self.vel

    def box(self, t: float) -> NDArray[np.float64]:
        """Global box ``[x, y, z, l, w, h, yaw, vx, vy]`` at scene time ``t``."""
        x, y = self.xy(t)
        l, w, h = self.size
        return np.array([x, y, h / 2, l, w, h, self.yaw, self.vel[0], self.vel[1]])


@dataclass
class World:
    """One scene: layout, ego, objects, lighting and timing."""

    seed: int
    index: int
    name: str
    road: Road
    ego: EgoTrajectory
    objects: list[SynthObject]
    timing: Timing
    n_samples: int
    sun: NDArray[np.float64]  # unit vector towards the sun (global)
    palette: dict
    max_range_m: float = 55.0
    look: object | None = None
    """``style.SceneLook`` of a styled dataset; ``None`` renders the default look."""

    def sample_time(self, k: int) -> float:
        return self.timing.rel_s(self.timing.sample_us(k))

    def camera_time(self, k: int, cam: str) -> float:
        return self.timing.rel_s(self.timing.camera_us(k, cam))

    def objects_at(self, k: int) -> list[SynthObject]:
        """Objects annotated (and rendered) at key frame ``k``."""
        return [o for o in self.objects if k in o.samples]

    def boxes(self, objs: list[SynthObject], t: float) -> NDArray[np.float64]:
        """``(N, 9)`` global boxes of ``objs`` at time ``t``."""
        if not objs:
            return np.zeros((0, 9))
        return np.stack([o.box(t) for o in objs])

    def token(self, *parts: object) -> str:
        return make_token(self.seed, self.index, *parts)


# ------------------------------------------------------------------------------------------------
# Appearance styles
# ------------------------------------------------------------------------------------------------

CAR_COLORS = np.array([
    (228, 228, 224), (30, 30, 34), (172, 174, 178), (105, 108, 112), (175, 28, 30), (30, 62, 155),
    (22, 32, 75), (32, 110, 62), (105, 22, 32), (192, 178, 142), (120, 165, 205), (80, 40, 120),
    (20, 130, 140),
], dtype=np.float64)
TRUCK_CAB_COLORS = np.array([(230, 230, 226), (180, 30, 30), (30, 70, 160), (40, 120, 60), (35, 35, 38)],
                            dtype=np.float64)
SKIN_COLORS = np.array([(232, 190, 150), (198, 140, 95), (150, 98, 60), (95, 62, 40)], dtype=np.float64)
CLOTH_COLORS = np.array([
    (200, 40, 40), (40, 80, 180), (240, 240, 235), (30, 30, 30), (60, 140, 70), (230, 180, 40),
    (120, 60, 140), (90, 90, 95), (230, 110, 40), (60, 170, 200),
], dtype=np.float64)
PANTS_COLORS = np.array([(30, 35, 60), (25, 25, 28), (110, 95, 70), (60, 60, 64), (40, 60, 110)], dtype=np.float64)
BUILDING_COLORS = np.array([
    (150, 72, 52), (198, 184, 150), (142, 142, 138), (92, 118, 148), (212, 208, 198), (112, 82, 62),
    (170, 120, 90), (120, 130, 120),
], dtype=np.float64)


def _jitter(rng: np.random.Generator, c: NDArray[np.float64], amount: float = 10.0) -> tuple:
    return tuple(float(v) for v in np.clip(c + rng.uniform(-amount, amount, 3), 0, 255))


def _style(rng: np.random.Generator, cls: str, moving: bool) -> dict:
    pick = lambda arr: _jitter(rng, arr[rng.integers(len(arr))])  # noqa: E731
    if cls == "car":
        return {"body": pick(CAR_COLORS)}
    if cls == "truck":
        return {"body": pick(TRUCK_CAB_COLORS), "cargo": _jitter(rng, np.array([205.0, 205, 200]), 25)}
    if cls == "bus":
        return {"body": _jitter(rng, np.array([232.0, 192, 28]), 12)}
    if cls == "trailer":
        return {"body": _jitter(rng, np.array([190.0, 192, 196]), 20)}
    if cls == "construction_vehicle":
        return {"body": _jitter(rng, np.array([246.0, 138, 12]), 8)}
    if cls == "pedestrian":
        return {"skin": pick(SKIN_COLORS), "shirt": pick(CLOTH_COLORS), "pants": pick(PANTS_COLORS)}
    if cls in ("motorcycle", "bicycle"):
        return {"body": pick(CLOTH_COLORS), "shirt": pick(CLOTH_COLORS), "helmet": pick(CLOTH_COLORS),
                "rider": bool(moving)}
    if cls == "barrier":
        return {"stripe": (200.0, 30.0, 30.0) if rng.random() < 0.7 else (235.0, 120.0, 20.0)}
    if cls == "traffic_cone":
        return {"body": _jitter(rng, np.array([245.0, 110, 20]), 8)}
    return {}


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


class _Placer:
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


class _Proposer:
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
                           style=_style(self.rng, cls, moving), attribute=attr)

    def _along(self, fr: RoadFrame, a_e: float, lim: float, half_len: float, static: bool) -> float | None:
        for _ in range(8):
            a = a_e + self.rng.uniform(-lim, lim)
            if not static or fr.allowed(a, half_len + 1.0):
                return a
        return None

    # -- proposals -------------------------------------------------------------------------------
    def propose(self, cls: str, k: int, forced: bool) -> list[SynthObject]:
        rng = self.rng
        fr, a_e = self._frame(k)
        t = self.world.sample_time(k)
        lim = min(0.6 * EVAL_RANGE_M[cls], 25.0) if forced else 48.0
        size = self._size(cls)
        half_len = size[0] / 2
        hr, n = self.hr, self.n
        moving_p = {"car": 0.55, "truck": 0.45, "bus": 0.55, "trailer": 0.15, "construction_vehicle": 0.2,
                    "motorcycle": 0.5, "bicycle": 0.45, "pedestrian": 0.65}.get(cls, 0.0)
        moving = (not forced) and rng.random() < moving_p
        if forced and cls == "pedestrian":
            moving = rng.random() < 0.5  # walking on the sidewalk is fine for the guarantee

        if cls in ("car", "truck", "bus", "trailer", "construction_vehicle"):
            if moving:
                a = self._along(fr, a_e, lim, half_len, static=False)
                direction = 1.0 if rng.random() < 0.5 else -1.0
                lane = int(rng.integers(n)) if cls != "construction_vehicle" else n - 1
                b = -direction * (LANE_W / 2 + LANE_W * lane) + rng.normal(0, 0.12)
                vmin, vmax = {"car": (3, 14), "truck": (3, 12), "bus": (4, 11), "trailer": (4, 10),
                              "construction_vehicle": (1.5, 4.5)}[cls]
                speed = rng.uniform(vmin, vmax)
                vel = direction * speed * fr.e_a
                yaw = fr.phi + (0.0 if direction > 0 else math.pi)
                return [self._obj(cls, fr.to_global(a, b), t, vel, yaw, size)]
            a = self._along(fr, a_e, lim, half_len, static=True)
            if a is None:
                return []
            side = 1.0 if rng.random() < 0.5 else -1.0
            b = side * (hr - PARK_W / 2 + max(0.0, size[1] - PARK_W) / 2) + rng.normal(0, 0.1)
            yaw = fr.phi + (math.pi if side > 0 else 0.0) + rng.normal(0, 0.03)
            if rng.random() < 0.1:
                yaw += math.pi
            return [self._obj(cls, fr.to_global(a, b), t, np.zeros(2), yaw, size)]

        if cls in ("motorcycle", "bicycle"):
            if moving:
                a = self._along(fr, a_e, lim, half_len, static=False)
                direction = 1.0 if rng.random() < 0.5 else -1.0
                if cls == "bicycle":
                    b = -direction * (LANE_W * n - 0.8) + rng.normal(0, 0.1)
                    speed = rng.uniform(2.5, 6.5)
                else:
                    lane = int(rng.integers(n))
                    b = -direction * (LANE_W / 2 + LANE_W * lane) + rng.normal(0, 0.3)
                    speed = rng.uniform(4.0, 14.0)
                vel = direction * speed * fr.e_a
                yaw = fr.phi + (0.0 if direction > 0 else math.pi)
                return [self._obj(cls, fr.to_global(a, b), t, vel, yaw, size)]
            a = self._along(fr, a_e, lim, half_len, static=True)
            if a is None:
                return []
            side = 1.0 if rng.random() < 0.5 else -1.0
            if rng.random() < 0.6:  # perpendicular to the kerb on the sidewalk
                b = side * (hr + 0.3 + size[0] / 2)
                yaw = fr.phi + math.pi / 2 + rng.normal(0, 0.15) + (math.pi if rng.random() < 0.5 else 0.0)
            else:
                b = side * (hr + 0.4 + size[1] / 2)
                yaw = fr.phi + rng.normal(0, 0.1) + (math.pi if rng.random() < 0.5 else 0.0)
            return [self._obj(cls, fr.to_global(a, b), t, np.zeros(2), yaw, size, parked_cycle=True)]

        if cls == "pedestrian":
            mode = "walk" if moving else "stand"
            if moving and rng.random() < 0.35:
                mode = "cross"
            side = 1.0 if rng.random() < 0.5 else -1.0
            if mode == "cross":
                a = self._along(fr, a_e, lim, 1.0, static=False)
                if fr.forbidden is not None and rng.random() < 0.6:
                    lo, hi = fr.forbidden
                    a = (lo + 2.5) if abs(a_e - lo) < abs(a_e - hi) else (hi - 2.5)
                    a += rng.normal(0, 0.8)
                b = rng.uniform(-hr, hr)
                direction = 1.0 if rng.random() < 0.5 else -1.0
                speed = rng.uniform(1.0, 1.6)
                vel = direction * speed * fr.e_b
                yaw = fr.phi + direction * math.pi / 2
                return [self._obj(cls, fr.to_global(a, b), t, vel, yaw, size)]
            a = self._along(fr, a_e, lim, 1.0, static=mode == "stand")
            if a is None:
                return []
            b = side * rng.uniform(hr + 0.6, hr + self.sw - 0.5)
            if mode == "walk":
                direction = 1.0 if rng.random() < 0.5 else -1.0
                vel = direction * rng.uniform(0.9, 1.7) * fr.e_a
                yaw = fr.phi + (0.0 if direction > 0 else math.pi)
                return [self._obj(cls, fr.to_global(a, b), t, vel, yaw, size)]
            return [self._obj(cls, fr.to_global(a, b), t, np.zeros(2), rng.uniform(-math.pi, math.pi), size)]

        if cls == "barrier":
            count = int(rng.integers(1, 3)) if forced else int(rng.integers(2, 7))
            gap = size[1] + rng.uniform(0.05, 0.4)
            total = gap * count
            a0 = self._along(fr, a_e, lim, total / 2 + 1.0, static=True)
            if a0 is None:
                return []
            side = 1.0 if rng.random() < 0.5 else -1.0
            b = side * (hr + 0.35) if rng.random() < 0.5 else side * (hr - PARK_W / 2)
            yaw = fr.phi + math.pi / 2 + rng.normal(0, 0.03)
            out = []
            for j in range(count):
                a = a0 - total / 2 + (j + 0.5) * gap
                out.append(self._obj(cls, fr.to_global(a, b + rng.normal(0, 0.03)), t, np.zeros(2),
                                     yaw + rng.normal(0, 0.02), size * rng.uniform(0.98, 1.02, 3)))
            return out

        if cls == "traffic_cone":
            count = int(rng.integers(1, 4)) if forced else int(rng.integers(3, 8))
            gap = rng.uniform(1.5, 4.0)
            total = gap * count
            a0 = self._along(fr, a_e, lim, total / 2 + 1.0, static=True)
            if a0 is None:
                return []
            side = 1.0 if rng.random() < 0.5 else -1.0
            opts = [LANE_W * i for i in range(1, n + 1)] + [hr - PARK_W / 2]
            b = side * opts[int(rng.integers(len(opts)))]
            out = []
            for j in range(count):
                a = a0 - total / 2 + (j + 0.5) * gap
                out.append(self._obj(cls, fr.to_global(a, b + rng.normal(0, 0.08)), t, np.zeros(2),
                                     rng.uniform(-math.pi, math.pi)))
            return out
        raise ValueError(f"unknown class {cls}")


# ------------------------------------------------------------------------------------------------
# Scene construction
# ------------------------------------------------------------------------------------------------


def _facade(rng: np.random.Generator, lo: float, hi: float) -> Facade:
    bounds = [lo]
    while bounds[-1] < hi:
        bounds.append(bounds[-1] + rng.uniform(8.0, 32.0))
    s = len(bounds) - 1
    heights = rng.uniform(5.0, 26.0, s)
    colors = np.stack([_jitter(rng, BUILDING_COLORS[i], 12) for i in rng.integers(len(BUILDING_COLORS), size=s)])
    return Facade(np.array(bounds), heights, colors)


def scene_base_us(seed: int, index: int) -> int:
    """Stamp of a scene's first key frame (deterministic, no wall clock)."""
    return 1_535_000_000_000_000 + (int(seed) % 997) * 86_400_000_000 + int(index) * 1_800_000_000


def build_world(cfg: SynthConfig, index: int) -> World:
    """Build scene ``index`` of the dataset ``cfg`` describes (deterministic in seed and index)."""
    rng = np.random.default_rng([int(cfg.seed) & 0xFFFFFFFF, int(index), 0x5CE7E])
    n_samples = cfg.samples
    t_end = (n_samples - 1) * KEYFRAME_PERIOD_S

    # --- road layout and ego route (road coordinates first) ---
    n_lanes = int(rng.integers(1, 3))
    sidewalk_w = float(rng.uniform(3.0, 5.0))
    setback = float(rng.uniform(0.0, 3.0))
    stationary = rng.random() < 0.08
    v_cruise = 0.0 if stationary else float(rng.uniform(4.0, 13.5))
    est_dist = max(v_cruise * t_end, 1.0)
    u_roll = rng.random()
    if stationary or est_dist < 15.0:
        kind = "straight"
    elif u_roll < 0.25:
        kind = "right"
    elif u_roll < 0.5:
        kind = "left"
    elif n_lanes == 2 and u_roll < 0.7:
        kind = "lane_change"
    else:
        kind = "straight"
    s0 = 5.0
    s_turn = s0 + est_dist * float(rng.uniform(0.2, 0.5))
    s_max = s0 + 15.0 * (t_end + 3.0) + 80.0
    s_path, u_path, r_path, h_path, cross_u, turn_span = _ego_path(rng, n_lanes, s_turn, kind, s_max)
    if kind not in ("right", "left"):
        turn_span = (0.0, 0.0)
        if rng.random() < 0.75:  # an intersection somewhere along (or around) the route
            cross_u = float(rng.uniform(-40.0, est_dist + 60.0))
            if abs(cross_u - s0) < n_lanes * LANE_W + PARK_W + 8.0:
                cross_u -= 30.0
    stop_s = None
    wait_s = 0.0
    if not stationary and rng.random() < 0.35:
        if kind in ("right", "left"):
            stop_s = turn_span[0] - 1.0
        else:
            stop_s = s0 + est_dist * float(rng.uniform(0.15, 0.6))
        wait_s = float(rng.uniform(1.0, 5.0))
    v_turn = float(np.clip(math.sqrt(2.0 * 8.0), 3.0, 6.0))
    t_dense = np.arange(-1.0, t_end + 1.0 + 1e-9, 0.01)
    if stationary:
        s_t, v_t = np.full_like(t_dense, s0), np.zeros_like(t_dense)
    else:
        s_t, v_t = _speed_profile(rng, t_dense, v_cruise, turn_span, v_turn, stop_s, wait_s, s0)
    u_t = np.interp(s_t, s_path, u_path)
    r_t = np.interp(s_t, s_path, r_path)
    h_t = np.interp(s_t, s_path, h_path)

    theta = float(rng.uniform(-math.pi, math.pi))
    road = Road(origin=np.zeros(2), theta=theta, n_lanes=n_lanes, sidewalk_w=sidewalk_w, setback=setback,
                cross_u=cross_u)
    xy = road.to_global(u_t, r_t)
    # Shift so that all coordinates stay positive (map masks start at the global origin).
    lo = xy.min(axis=0)
    shift = 160.0 - lo + rng.uniform(0.0, 150.0, 2)
    road.origin = road.origin + shift
    xy = xy + shift
    ego = EgoTrajectory(t=t_dense, x=xy[:, 0], y=xy[:, 1], yaw=theta + h_t, speed=v_t, kind=kind)

    # Building fronts along both sides of both roads.
    u_lo, u_hi = float(u_t.min()) - 250.0, float(u_t.max()) + 250.0
    road.facades["main+"] = _facade(rng, u_lo, u_hi)
    road.facades["main-"] = _facade(rng, u_lo, u_hi)
    if cross_u is not None:
        road.facades["cross-"] = _facade(rng, -400.0, 400.0)
        road.facades["cross+"] = _facade(rng, -400.0, 400.0)

    # Lighting and palette.
    sun_az = float(rng.uniform(-math.pi, math.pi))
    sun_el = float(rng.uniform(math.radians(30), math.radians(65)))
    sun = np.array([math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az), math.sin(sun_el)])
    palette = {
        "asphalt": float(rng.uniform(58.0, 92.0)),
        "sidewalk": _jitter(rng, np.array([168.0, 165, 158]), 12),
        "grass": _jitter(rng, np.array([78.0, 112, 56]), 12),
        "sky_zenith": _jitter(rng, np.array([92.0, 138, 205]), 12),
        "sky_horizon": _jitter(rng, np.array([206.0, 216, 228]), 8),
        "noise_seed": int(rng.integers(1 << 30)),
    }

    timing = Timing(base_us=scene_base_us(cfg.seed, index), samples=n_samples)
    world = World(seed=int(cfg.seed), index=int(index), name=scene_name(cfg.seed, index), road=road, ego=ego,
                  objects=[], timing=timing, n_samples=n_samples, sun=sun, palette=palette,
                  max_range_m=cfg.max_range_m)
    _populate(world, cfg, rng)
    if cfg.style is not None:  # repaint only: its own random stream, geometry untouched
        from .style import apply_style

        apply_style(world, cfg.style)
    return world


def _populate(world: World, cfg: SynthConfig, rng: np.random.Generator) -> None:
    placer = _Placer(world, cfg)
    prop = _Proposer(world, rng)
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


def _ensure_coverage(world: World, cfg: SynthConfig, placer: _Placer, candidate, rng: np.random.Generator,
                     rounds: int = 4) -> None:
    """Add instances of classes that no key frame shows with lidar points within their
    evaluation range (e.g. all hidden behind parked trucks): candidates are accepted only if a
    noise-free scan at their anchor key frame sees them within range."""
    from .lidar import Lidar  # local import: lidar depends on this module

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
