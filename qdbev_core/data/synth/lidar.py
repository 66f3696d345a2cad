"""Simulated 32-beam spinning lidar at LIDAR_TOP: hit points and per-object point counts.

Rays (32 beams over -30..+10 deg elevation x ``azimuth_steps``) start at the LIDAR_TOP origin;
each keeps its first hit among the ground, the building fronts and the objects (slab test in the
box frame, only for the rays inside an object's angular window). ``num_lidar_pts`` of an object
is the number of rays whose first hit is that object, after a small random dropout.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ...classes import CLASS_NAMES
from ...geometry import make_transform
from ..rig import LIDAR_TOP_ROTATION, LIDAR_TOP_TRANSLATION
from .render import _slab
from .world import SynthObject, World

N_BEAMS = 32
ELEVATION_DEG = (-30.0, 10.0)
DROPOUT = 0.04
_INTENSITY = {
    "car": 35.0, "truck": 30.0, "construction_vehicle": 45.0, "bus": 30.0, "trailer": 40.0, "barrier": 90.0,
    "motorcycle": 25.0, "bicycle": 20.0, "pedestrian": 12.0, "traffic_cone": 110.0,
}
assert set(_INTENSITY) == set(CLASS_NAMES)


class Lidar:
    """The LIDAR_TOP sensor of the rig; ``scan`` simulates one sweep at a key frame."""

    def __init__(self, azimuth_steps: int = 1084, max_range_m: float = 70.0):
        self.n_az = int(azimuth_steps)
        self.max_range = float(max_range_m)
        self.elev = np.radians(np.linspace(*ELEVATION_DEG, N_BEAMS))
        self.az = np.linspace(-math.pi, math.pi, self.n_az, endpoint=False)
        ce, se = np.cos(self.elev)[:, None], np.sin(self.elev)[:, None]
        self.dirs = np.stack([ce * np.cos(self.az)[None], ce * np.sin(self.az)[None],
                              np.broadcast_to(se, (N_BEAMS, self.n_az))], -1)  # ego frame, unit
        self.lidar2ego = make_transform(LIDAR_TOP_ROTATION, LIDAR_TOP_TRANSLATION)
        self.origin = np.array(LIDAR_TOP_TRANSLATION, dtype=np.float64)

    def _windows(self, cen: NDArray, corners: NDArray, half_h: float):
        """Beam rows and azimuth columns (with wrap) that can hit a box (ego-frame corners)."""
        rel = corners[:, :2] - self.origin[:2]
        c_az = math.atan2(cen[1] - self.origin[1], cen[0] - self.origin[0])
        az = np.arctan2(rel[:, 1], rel[:, 0])
        d = (az - c_az + math.pi) % (2 * math.pi) - math.pi
        lo, hi = c_az + d.min(), c_az + d.max()
        step = 2 * math.pi / self.n_az
        i0 = int(math.floor((lo + math.pi) / step)) - 1
        i1 = int(math.ceil((hi + math.pi) / step)) + 1
        cols = np.arange(i0, i1 + 1) % self.n_az
        dist = math.hypot(cen[0] - self.origin[0], cen[1] - self.origin[1])
        rad = float(np.max(np.hypot(*(corners[:, :2] - cen[:2]).T)))
        dmin, dmax = max(dist - rad, 0.1), dist + rad
        z_top = cen[2] + half_h - self.origin[2]
        z_bot = cen[2] - half_h - self.origin[2]
        e_hi = math.atan2(z_top, dmin if z_top > 0 else dmax)
        e_lo = math.atan2(z_bot, dmin if z_bot < 0 else dmax)
        pad = math.radians(0.5)
        rows = np.flatnonzero((self.elev >= e_lo - pad) & (self.elev <= e_hi + pad))
        return rows, np.unique(cols)

    def scan(self, world: World, t: float, objs: list[SynthObject], rng: np.random.Generator | None):
        """Simulate the sweep at scene time ``t`` (``rng=None``: no noise or dropout, counts only).

        Returns ``(points, counts)``: ``(N, 5)`` float32 ``x, y, z, intensity, ring`` in the
        LIDAR_TOP frame and the number of returns on each object of ``objs``.
        """
        ego2global = world.ego.matrix(t)
        ex, ey = ego2global[0, 3], ego2global[1, 3]
        eyaw = math.atan2(ego2global[1, 0], ego2global[0, 0])
        best = np.full((N_BEAMS, self.n_az), np.inf)  # range of the nearest hit per beam, metres
        who = np.full((N_BEAMS, self.n_az), -3, dtype=np.int64)  # -1 ground, -2 building, -3 none
        self._hit_ground(best, who)
        self._hit_buildings(world, ex, ey, eyaw, best, who)
        for oi, obj in enumerate(objs):
            self._hit_object(oi, obj, t, ex, ey, eyaw, best, who)
        return self._returns(best, who, objs, rng)

    def _hit_ground(self, best: NDArray[np.float64], who: NDArray[np.int64]) -> None:
        d = self.dirs
        with np.errstate(divide="ignore"):
            tg = np.where(d[..., 2] < -1e-6, -self.origin[2] / d[..., 2], np.inf)
        best[...] = np.minimum(best, tg)
        who[np.isfinite(tg)] = -1

    def _hit_buildings(self, world: World, ex: float, ey: float, eyaw: float, best: NDArray[np.float64],
                       who: NDArray[np.int64]) -> None:
        """Building fronts, intersected in the road frame."""
        d = self.dirs
        o = self.origin
        road = world.road
        alpha = eyaw - road.theta
        c, s = math.cos(alpha), math.sin(alpha)
        ue, re_ = road.to_road(np.array([ex, ey]))
        uo, ro = ue + c * o[0] - s * o[1], re_ + s * o[0] + c * o[1]
        du = c * d[..., 0] - s * d[..., 1]
        dr = s * d[..., 0] + c * d[..., 1]
        f = road.facade_dist
        sides = [("main+", "r", f), ("main-", "r", -f)]
        if road.cross_u is not None:
            sides += [("cross-", "u", road.cross_u - f), ("cross+", "u", road.cross_u + f)]
        with np.errstate(divide="ignore", invalid="ignore"):
            for key, coord, val in sides:
                if coord == "r":
                    tt = (val - ro) / dr
                    a = uo + tt * du
                    ok = np.isfinite(tt) & (tt > 0)
                    if road.cross_u is not None:
                        ok &= np.abs(a - road.cross_u) >= f
                else:
                    tt = (val - uo) / du
                    a = ro + tt * dr
                    ok = np.isfinite(tt) & (tt > 0) & (np.abs(a) >= f)
                z = o[2] + tt * d[..., 2]
                hgt, _ = road.facades[key].lookup(np.where(ok, a, 0.0))
                ok &= (z >= 0) & (z <= hgt) & (tt < best)
                best[ok] = tt[ok]
                who[ok] = -2

    def _hit_object(self, oi: int, obj: SynthObject, t: float, ex: float, ey: float, eyaw: float,
                    best: NDArray[np.float64], who: NDArray[np.int64]) -> None:
        """Object ``oi``'s box, intersected in the ego frame within its beam / azimuth window."""
        d = self.dirs
        ci, si = math.cos(-eyaw), math.sin(-eyaw)
        gx, gy = obj.xy(t)
        dx, dy = gx - ex, gy - ey
        cen = np.array([ci * dx - si * dy, si * dx + ci * dy, obj.size[2] / 2])
        yaw_e = obj.yaw - eyaw
        half = obj.size / 2
        cy_, sy_ = math.cos(yaw_e), math.sin(yaw_e)
        rot = np.array([[cy_, -sy_, 0.0], [sy_, cy_, 0.0], [0.0, 0.0, 1.0]])
        sx = np.array([1, 1, -1, -1]) * half[0]
        sy = np.array([1, -1, -1, 1]) * half[1]
        corners = np.stack([sx, sy, np.zeros(4)], -1) @ rot.T + cen
        rows, cols = self._windows(cen, corners, half[2])
        if rows.size == 0 or cols.size == 0:
            return
        sub = d[np.ix_(rows, cols)]
        d_l = sub @ rot
        o_l = (self.origin - cen) @ rot
        tn, tf, _ = _slab(np.broadcast_to(o_l, d_l.shape), d_l, half)
        hit = (tn <= tf) & (tn > 0.0)
        if not hit.any():
            return
        cur = best[np.ix_(rows, cols)]
        win = hit & (tn < cur)
        if win.any():
            rr, cc = np.nonzero(win)
            best[rows[rr], cols[cc]] = tn[win]
            who[rows[rr], cols[cc]] = oi

    def _returns(self, best: NDArray[np.float64], who: NDArray[np.int64], objs: list[SynthObject],
                 rng: np.random.Generator | None):
        """Range limit, dropout and range noise, the ego's own body removed; intensities and rings."""
        d = self.dirs
        o = self.origin
        valid = np.isfinite(best) & (best <= self.max_range)
        rng_noise = 0.0
        if rng is not None:
            valid &= rng.random(best.shape) >= DROPOUT
            rng_noise = rng.normal(0.0, 0.015, best.shape)
        pts = o + d * np.where(valid, best + rng_noise, 0.0)[..., None]
        on_ego = (pts[..., 0] > -1.0) & (pts[..., 0] < 3.7) & (np.abs(pts[..., 1]) < 1.0) & (pts[..., 2] < 1.95)
        valid &= ~on_ego
        counts = np.bincount(who[valid & (who >= 0)], minlength=len(objs))[: len(objs)]
        if rng is None:
            return np.zeros((0, 5), dtype=np.float32), counts.astype(np.int64)
        inten = np.where(who == -1, 8.0, np.where(who == -2, 28.0, 0.0))
        for oi, obj in enumerate(objs):
            inten[who == oi] = _INTENSITY[obj.cls]
        inten = np.clip(inten + rng.normal(0.0, 3.0, best.shape), 0.0, 255.0)
        ring = np.broadcast_to(np.arange(N_BEAMS, dtype=np.float64)[:, None], best.shape)
        p = pts[valid]
        p_l = (p - self.lidar2ego[:3, 3]) @ self.lidar2ego[:3, :3]
        out = np.concatenate([p_l, inten[valid][:, None], ring[valid][:, None]], axis=1).astype(np.float32)
        return out, counts.astype(np.int64)
