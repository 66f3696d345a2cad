"""The world of one SynthScenes scene: road layout, ego trajectory and the objects (data only).

Everything lives in a flat global frame (z = 0 is the ground). A scene has a straight main road
(``u`` along it, ``r`` to its left) and, usually, a perpendicular cross road at ``u = cross_u``;
buildings line both roads. Every object moves in a straight line at constant velocity, so
``NuScenes.box_velocity`` (a centred difference of the annotated positions) recovers the true
velocity exactly. How a scene is drawn at random: ``route.py`` (road and ego), ``placement.py``
(objects), ``build.py`` (``build_world``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .config import Timing, make_token

LANE_W = 3.5
"""Lane width in metres."""
PARK_W = 2.5
"""Parking-lane width in metres."""


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
