"""The random road layout and ego route of a scene (``build.build_world``'s first step).

The ego starts in the right-most lane of the main road and either drives straight (possibly
changing lanes) or turns into the cross road, with a simple kinematic speed profile (cruise,
slow-downs for turns, stops). Units: metres, seconds, radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .config import KEYFRAME_PERIOD_S
from .palette import BUILDING_COLORS, jitter
from .world import LANE_W, PARK_W, EgoTrajectory, Facade, Road


def _smoothstep(x: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


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


def facade(rng: np.random.Generator, lo: float, hi: float) -> Facade:
    """Building fronts from ``lo`` to past ``hi`` (metres along the street): 8-32 m wide, 5-26 m high."""
    bounds = [lo]
    while bounds[-1] < hi:
        bounds.append(bounds[-1] + rng.uniform(8.0, 32.0))
    s = len(bounds) - 1
    heights = rng.uniform(5.0, 26.0, s)
    colors = np.stack([jitter(rng, BUILDING_COLORS[i], 12) for i in rng.integers(len(BUILDING_COLORS), size=s)])
    return Facade(np.array(bounds), heights, colors)


@dataclass(frozen=True)
class RouteChoice:
    """The first random choices of a scene: road shape and how the ego drives."""

    n_lanes: int
    """Lanes per direction (1 or 2)."""
    sidewalk_w: float
    """Sidewalk width, metres."""
    setback: float
    """Distance of the building fronts behind the sidewalk, metres."""
    stationary: bool
    """The ego does not move at all."""
    v_cruise: float
    """Cruise speed, m/s (0 when stationary)."""
    est_dist: float
    """Rough distance driven over the scene, metres (at least 1)."""
    kind: str
    """``straight``, ``right``, ``left`` or ``lane_change``."""


def choose_route(rng: np.random.Generator, t_end: float) -> RouteChoice:
    """Road shape, ego speed and manoeuvre for a scene lasting ``t_end`` seconds."""
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
    return RouteChoice(n_lanes=n_lanes, sidewalk_w=sidewalk_w, setback=setback, stationary=bool(stationary),
                       v_cruise=v_cruise, est_dist=est_dist, kind=kind)


def _cross_road(rng: np.random.Generator, c: RouteChoice, s0: float, cross_u: float | None,
                turn_span: tuple[float, float]) -> tuple[float | None, tuple[float, float]]:
    """Without a turn, an intersection somewhere along (or around) the route, 3 times in 4;
    returns the cross road position ``u`` (metres, or None) and the turn's path span."""
    if c.kind not in ("right", "left"):
        turn_span = (0.0, 0.0)
        if rng.random() < 0.75:
            cross_u = float(rng.uniform(-40.0, c.est_dist + 60.0))
            if abs(cross_u - s0) < c.n_lanes * LANE_W + PARK_W + 8.0:
                cross_u -= 30.0
    return cross_u, turn_span


def _stop(rng: np.random.Generator, c: RouteChoice, s0: float,
          turn_span: tuple[float, float]) -> tuple[float | None, float]:
    """Where along the path the ego stops (metres, or None) and for how long (seconds)."""
    stop_s = None
    wait_s = 0.0
    if not c.stationary and rng.random() < 0.35:
        if c.kind in ("right", "left"):
            stop_s = turn_span[0] - 1.0
        else:
            stop_s = s0 + c.est_dist * float(rng.uniform(0.15, 0.6))
        wait_s = float(rng.uniform(1.0, 5.0))
    return stop_s, wait_s


def road_and_ego(rng: np.random.Generator, n_samples: int) -> tuple[Road, EgoTrajectory, tuple[float, float]]:
    """The road (no facades yet), the ego trajectory over ``n_samples`` key frames and the range of
    the route's along-road coordinate ``u`` (metres). Road coordinates first, then a random
    global yaw and a shift that keeps every coordinate positive (map masks start at the origin)."""
    t_end = (n_samples - 1) * KEYFRAME_PERIOD_S
    c = choose_route(rng, t_end)
    s0 = 5.0
    s_turn = s0 + c.est_dist * float(rng.uniform(0.2, 0.5))
    s_max = s0 + 15.0 * (t_end + 3.0) + 80.0
    s_path, u_path, r_path, h_path, cross_u, turn_span = _ego_path(rng, c.n_lanes, s_turn, c.kind, s_max)
    cross_u, turn_span = _cross_road(rng, c, s0, cross_u, turn_span)
    stop_s, wait_s = _stop(rng, c, s0, turn_span)
    v_turn = float(np.clip(math.sqrt(2.0 * 8.0), 3.0, 6.0))
    t_dense = np.arange(-1.0, t_end + 1.0 + 1e-9, 0.01)
    if c.stationary:
        s_t, v_t = np.full_like(t_dense, s0), np.zeros_like(t_dense)
    else:
        s_t, v_t = _speed_profile(rng, t_dense, c.v_cruise, turn_span, v_turn, stop_s, wait_s, s0)
    u_t = np.interp(s_t, s_path, u_path)
    r_t = np.interp(s_t, s_path, r_path)
    h_t = np.interp(s_t, s_path, h_path)

    theta = float(rng.uniform(-math.pi, math.pi))
    road = Road(origin=np.zeros(2), theta=theta, n_lanes=c.n_lanes, sidewalk_w=c.sidewalk_w, setback=c.setback,
                cross_u=cross_u)
    xy = road.to_global(u_t, r_t)
    lo = xy.min(axis=0)
    shift = 160.0 - lo + rng.uniform(0.0, 150.0, 2)
    road.origin = road.origin + shift
    xy = xy + shift
    ego = EgoTrajectory(t=t_dense, x=xy[:, 0], y=xy[:, 1], yaw=theta + h_t, speed=v_t, kind=c.kind)
    return road, ego, (float(u_t.min()), float(u_t.max()))


def add_facades(rng: np.random.Generator, road: Road, u_range: tuple[float, float]) -> None:
    """Building fronts along both sides of both roads (``road.facades``), 250 m past the route."""
    u_lo, u_hi = u_range[0] - 250.0, u_range[1] + 250.0
    road.facades["main+"] = facade(rng, u_lo, u_hi)
    road.facades["main-"] = facade(rng, u_lo, u_hi)
    if road.cross_u is not None:
        road.facades["cross-"] = facade(rng, -400.0, 400.0)
        road.facades["cross+"] = facade(rng, -400.0, 400.0)
