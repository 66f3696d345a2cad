"""Camera rendering of a SynthScenes world: per-pixel ray casting, vectorized with NumPy.

Every pixel's ray (``K^-1 [u, v, 1]``, so the ray parameter is the optical-axis depth) is
intersected with the ground plane, the building fronts and, inside each object's projected
rectangle, with the object's oriented box (slab test in the box frame). A depth buffer keeps the
nearest surface, so occlusion between objects is exact, and objects partly behind the camera
need no polygon clipping: only the rectangle that bounds the visible part is computed with a
near-plane clip. Alongside the image the renderer returns an object-id buffer and, for every
object, how many pixels it covers ignoring other objects (``total``) and how many it wins in the
depth test (``visible``): their ratio over all cameras is the nuScenes visibility.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from ...geometry import invert_transform
from ...types import CAMERA_NAMES
from ..rig import NUSCENES_RIG, scaled_intrinsics
from .style import image_look
from .world import LANE_W, SynthObject, World

NEAR = 0.05
GROUND_MAX_M = 400.0
AMBIENT = 0.55
DIFFUSE = 0.6
_PAIRS = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)])


@dataclass
class CameraModel:
    """One camera of the rig at the written image size, with per-pixel rays precomputed."""

    name: str
    K: NDArray[np.float64]
    cam2ego: NDArray[np.float64]
    width: int
    height: int

    def __post_init__(self) -> None:
        jj, ii = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        pix = np.stack([jj, ii, np.ones_like(jj)], -1)
        self.rays_cam = (pix @ np.linalg.inv(self.K).T).astype(np.float32)  # z = 1
        rot = self.cam2ego[:3, :3]
        self.rays_ego = (self.rays_cam.astype(np.float64) @ rot.T).astype(np.float32)
        self.origin_ego = self.cam2ego[:3, 3].copy()
        dz = self.rays_ego[..., 2].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(dz < -1e-6, -self.origin_ego[2] / dz, np.inf)
        horiz = t * np.hypot(self.rays_ego[..., 0], self.rays_ego[..., 1])
        t[horiz > GROUND_MAX_M] = np.inf
        self.ground_t = t.astype(np.float32)
        self.ray_norm = np.linalg.norm(self.rays_cam, axis=-1).astype(np.float32)


def camera_models(width: int, height: int) -> dict[str, CameraModel]:
    """The six nuScenes cameras with intrinsics scaled to ``width`` x ``height`` images."""
    out = {}
    for name in CAMERA_NAMES:
        calib = NUSCENES_RIG[name]
        k_full = np.array([[calib.fx, 0.0, calib.cx], [0.0, calib.fy, calib.cy], [0.0, 0.0, 1.0]])
        k = scaled_intrinsics(k_full, width / 1600.0, height / 900.0)
        out[name] = CameraModel(name, k, calib.cam2ego(), width, height)
    return out


@dataclass
class RenderResult:
    image: NDArray[np.uint8]  # (H, W, 3) RGB
    ids: NDArray[np.int32]  # (H, W) index into the rendered object list, -1 = background
    depth: NDArray[np.float32]  # (H, W) optical-axis depth, inf = sky
    visible: NDArray[np.int64]  # (N,) pixels won in the depth test
    total: NDArray[np.int64]  # (N,) pixels covered ignoring other objects


# ------------------------------------------------------------------------------------------------
# Box geometry helpers
# ------------------------------------------------------------------------------------------------


def _rot_z(yaw: float) -> NDArray[np.float64]:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _clip_rect(pts_cam: NDArray[np.float64], K: NDArray[np.float64], width: int, height: int):
    """Pixel rectangle ``(r0, r1, c0, c1)`` bounding the convex hull of ``pts_cam`` clipped to
    ``z >= NEAR``, or ``None`` if nothing of it lies in front of the camera / in the image."""
    z = pts_cam[:, 2]
    front = z >= NEAR
    if not front.any():
        return None
    pts = [pts_cam[front]]
    if not front.all():
        i, j = _PAIRS[:, 0], _PAIRS[:, 1]
        i, j = i[i < len(pts_cam)], j[j < len(pts_cam)]
        cross = front[i] != front[j]
        if cross.any():
            a, b = pts_cam[i[cross]], pts_cam[j[cross]]
            s = (NEAR - a[:, 2]) / (b[:, 2] - a[:, 2])
            pts.append(a + s[:, None] * (b - a))
    p = np.concatenate(pts)
    uv = p[:, :2] / p[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    c0 = max(int(math.floor(uv[:, 0].min())) - 1, 0)
    c1 = min(int(math.ceil(uv[:, 0].max())) + 2, width)
    r0 = max(int(math.floor(uv[:, 1].min())) - 1, 0)
    r1 = min(int(math.ceil(uv[:, 1].max())) + 2, height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


_CameraBox = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
"""(rotation box -> camera, centre in the camera frame in metres, half extents in metres)."""


def _camera_box(obj: SynthObject, g2c: NDArray[np.float64], t_obj: float) -> _CameraBox:
    """``obj``'s box at scene time ``t_obj`` in the camera frame (``g2c``: global -> camera)."""
    x, y = obj.xy(t_obj)
    l, w, h = obj.size
    rot = g2c[:3, :3] @ _rot_z(obj.yaw)
    centre = g2c[:3, :3] @ np.array([x, y, h / 2]) + g2c[:3, 3]
    half = np.array([l / 2, w / 2, h / 2])
    return rot, centre, half


def _box_corners(half: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 8 corners ``(8, 3)`` of a box with half extents ``half``, in its own frame."""
    sx = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * half[0]
    sy = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * half[1]
    sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * half[2]
    return np.stack([sx, sy, sz], -1)


def _slab(o: NDArray, d: NDArray, half: NDArray):
    """Ray/box slab test in the box frame. ``o``, ``d``: ``(..., 3)``; returns (tnear, tfar, axis)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (-half - o) * inv
        t2 = (half - o) * inv
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    axis = np.argmax(tmin, axis=-1)
    tnear = np.take_along_axis(tmin, axis[..., None], -1)[..., 0]
    tfar = tmax.min(axis=-1)
    return tnear, tfar, axis


# ------------------------------------------------------------------------------------------------
# Object appearance
# ------------------------------------------------------------------------------------------------


def _wheels(xm, zm, l, centres, radius):
    m = np.zeros(xm.shape, dtype=bool)
    for cx in centres:
        m |= (xm - cx) ** 2 + (zm - radius) ** 2 < radius ** 2
    return m


_GLASS = np.array([48.0, 58.0, 72.0])
_BLACK = np.array([22.0, 22.0, 24.0])


@dataclass
class _Hits:
    """Hit points on one object's box: normalised (``xf``, ``yf`` in [-0.5, 0.5], ``zf`` in [0, 1])
    and metric (``xm``, ``ym``, ``zm``) box coordinates, and which face each lies on."""

    cls: str
    l: float
    w: float
    axis: NDArray
    xf: NDArray
    yf: NDArray
    zf: NDArray
    xm: NDArray
    ym: NDArray
    zm: NDArray
    side: NDArray
    front: NDArray
    back: NDArray
    top: NDArray


def object_colors(obj: SynthObject, axis: NDArray, sign: NDArray, hn: NDArray) -> NDArray[np.float64]:
    """Base RGB of hit points on ``obj`` given the face (axis 0/1/2 = x/y/z, sign) and the hit
    point in normalised box coordinates ``hn`` in [-0.5, 0.5]^3 (x forward, z up)."""
    n = hn.shape[0]
    l, w, h = obj.size
    st = obj.style
    xf, yf, zf = hn[:, 0], hn[:, 1], hn[:, 2] + 0.5
    f = _Hits(cls=obj.cls, l=l, w=w, axis=axis, xf=xf, yf=yf, zf=zf, xm=xf * l, ym=yf * w, zm=zf * h,
              side=axis == 1, front=(axis == 0) & (sign > 0), back=(axis == 0) & (sign < 0),
              top=(axis == 2) & (sign > 0))
    col = np.empty((n, 3))
    body = np.array(st.get("body", (150.0, 150.0, 150.0)))
    col[:] = body
    paint = _PAINTERS.get(obj.cls)
    if paint is not None:
        paint(col, f, st, body)
    return col


def _paint_car(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """Glass cabin, dark sills, wheels, grille, head- and tail-lights, roof."""
    xf, yf, zf, xm, zm, l = f.xf, f.yf, f.zf, f.xm, f.zm, f.l
    side, front, back, top = f.side, f.front, f.back, f.top
    cabin = (zf > 0.58) & (zf < 0.93)
    g = cabin & ((side & (np.abs(xf) < 0.34) & (np.abs(xf + 0.02) > 0.025)) | ((front | back) & (np.abs(yf) < 0.42)))
    col[g] = _GLASS
    col[(zf < 0.13)] = body * 0.45
    wh = side & _wheels(xm, zm, l, (l / 2 - 0.85, -l / 2 + 0.85), 0.34)
    col[wh] = _BLACK
    col[front & (zf > 0.22) & (zf < 0.36) & (np.abs(yf) < 0.25)] = (40.0, 40.0, 42.0)
    col[front & (zf > 0.4) & (zf < 0.52) & (np.abs(yf) > 0.28) & (np.abs(yf) < 0.46)] = (250.0, 248.0, 228.0)
    col[back & (zf > 0.42) & (zf < 0.55) & (np.abs(yf) > 0.3) & (np.abs(yf) < 0.47)] = (200.0, 18.0, 18.0)
    col[top & (xf > -0.32) & (xf < 0.22)] = body * 0.85


def _paint_truck(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """Cab in the body colour, ribbed cargo box, windscreen, chassis, wheels, lights."""
    yf, xm, zm, side, front, back, l = f.yf, f.xm, f.zm, f.side, f.front, f.back, f.l
    cab = xm > l / 2 - 2.2
    cargo = np.array(st["cargo"])
    col[~cab] = cargo
    rib = side & ~cab & (np.mod(xm, 0.55) < 0.06)
    col[rib] = cargo * 0.8
    col[(cab & (zm > 1.55) & (zm < 2.3) & ((front & (np.abs(yf) < 0.44)) | (side & (xm > l / 2 - 1.6))))] = _GLASS
    col[zm < 0.95] = (48.0, 48.0, 50.0)
    col[side & _wheels(xm, zm, l, (l / 2 - 1.1, -l / 2 + 1.2, -l / 2 + 2.3), 0.5)] = _BLACK
    col[front & (zm > 0.7) & (zm < 0.95) & (np.abs(yf) > 0.3)] = (250.0, 248.0, 228.0)
    col[back & (zm > 0.75) & (zm < 0.95) & (np.abs(yf) > 0.33)] = (200.0, 18.0, 18.0)


def _paint_bus(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """Window band, windscreens, red stripe, destination sign, wheels, headlights."""
    yf, zf, xm, zm, l = f.yf, f.zf, f.xm, f.zm, f.l
    side, front, back, top = f.side, f.front, f.back, f.top
    win = side & (zf > 0.5) & (zf < 0.82) & (np.mod(xm, 1.3) > 0.14) & (xm < l / 2 - 1.0)
    col[win] = _GLASS
    col[front & (zf > 0.33) & (zf < 0.88) & (np.abs(yf) < 0.45)] = _GLASS
    col[back & (zf > 0.55) & (zf < 0.85) & (np.abs(yf) < 0.42)] = _GLASS
    col[(zf > 0.4) & (zf < 0.44) & ~top] = (190.0, 30.0, 30.0)
    col[front & (zf > 0.9) & (zf < 0.96) & (np.abs(yf) < 0.35)] = (250.0, 150.0, 30.0)
    col[zm < 0.35] = (30.0, 30.0, 32.0)
    col[side & _wheels(xm, zm, l, (l / 2 - 2.6, -l / 2 + 3.0), 0.5)] = _BLACK
    col[front & (zm > 0.45) & (zm < 0.7) & (np.abs(yf) > 0.3)] = (250.0, 248.0, 228.0)


def _paint_trailer(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """Ribbed sides, red/white reflective tape, rear doors, chassis, wheels."""
    xm, ym, zm, side, back, l = f.xm, f.ym, f.zm, f.side, f.back, f.l
    col[side & (np.mod(xm, 0.6) < 0.07)] = body * 0.78
    tape = side & (zm > 1.15) & (zm < 1.27)
    col[tape] = np.where((np.mod(xm, 0.6) < 0.3)[tape, None], (210.0, 30.0, 30.0), (240.0, 240.0, 240.0))
    col[back & (np.abs(ym) < 0.03)] = (60.0, 60.0, 62.0)
    col[zm < 1.15] = (36.0, 36.0, 38.0)
    col[side & _wheels(xm, zm, l, (-l / 2 + 1.0, -l / 2 + 2.1), 0.5)] = _BLACK


def _paint_construction_vehicle(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """Glazed cab, grey front, big wheels, hazard stripes at the back."""
    xf, zf, xm, ym, zm, l = f.xf, f.zf, f.xm, f.ym, f.zm, f.l
    side, front, back, top = f.side, f.front, f.back, f.top
    cab = (xf < 0.05) & (zf > 0.55)
    col[cab & (side | back) & (np.mod(xm + l, 1.0) > 0.12) & (zf < 0.93)] = _GLASS
    col[front & (zf < 0.55)] = (85.0, 85.0, 88.0)
    col[side & _wheels(xm, zm, l, (l / 2 - 1.2, -l / 2 + 1.2), 0.75)] = _BLACK
    haz = back & (zf < 0.3)
    col[haz] = np.where((np.mod(ym + zm, 0.5) < 0.25)[haz, None], _BLACK, (245.0, 200.0, 20.0))
    col[top & (xf < 0.05)] = body * 0.8


def _paint_pedestrian(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """Shirt, trousers (legs split), shoes, head with hair."""
    yf, zf, back, top, axis = f.yf, f.zf, f.back, f.top, f.axis
    col[:] = st["shirt"]
    col[zf < 0.5] = st["pants"]
    col[(zf < 0.5) & (axis == 0) & (np.abs(yf) < 0.05)] = np.array(st["pants"]) * 0.55
    col[zf < 0.05] = _BLACK
    head = zf > 0.86
    col[head] = st["skin"]
    col[head & (back | top | (zf > 0.95))] = (45.0, 32.0, 22.0)


def _paint_cycle(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """Frame, wheels (bicycles with light rims), rider or an empty seat."""
    zf, xm, zm, side, l = f.zf, f.xm, f.zm, f.side, f.l
    cls = f.cls
    r = 0.32 if cls == "motorcycle" else 0.34
    wc = (l / 2 - r - 0.02, -l / 2 + r + 0.02)
    wheel = side & _wheels(xm, zm, l, wc, r)
    low = zf < (0.42 if cls == "motorcycle" else 0.5)
    col[low] = (95.0, 95.0, 98.0) if cls == "motorcycle" else np.array(st["body"]) * 0.9
    if cls == "bicycle":
        inner = side & _wheels(xm, zm, l, wc, r - 0.06)
        col[wheel] = _BLACK
        col[inner] = (150.0, 150.0, 150.0)
    else:
        col[wheel] = _BLACK
    if st.get("rider"):
        rider = (zf > 0.55) & (np.abs(xm + 0.05 * l) < 0.3)
        col[(zf > 0.55) & ~rider] = np.array(st["body"]) * 0.6
        col[rider] = st["shirt"]
        col[rider & (zf > 0.85)] = st["helmet"]
    else:
        col[zf > 0.62] = (70.0, 70.0, 72.0)


def _paint_barrier(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """White with 0.5 m stripes of the style colour, grey feet."""
    zf, ym, top, w = f.zf, f.ym, f.top, f.w
    stripe = np.array(st["stripe"])
    odd = np.mod(np.floor((ym + w / 2) / 0.5), 2) == 1
    col[:] = (238.0, 238.0, 236.0)
    col[odd] = stripe
    col[top] = (238.0, 238.0, 236.0)
    col[zf < 0.12] = (110.0, 110.0, 112.0)


def _paint_traffic_cone(col: NDArray[np.float64], f: _Hits, st: dict, body: NDArray[np.float64]) -> None:
    """White reflective band, black base."""
    zf = f.zf
    col[(zf > 0.5) & (zf < 0.7)] = (245.0, 245.0, 245.0)
    col[zf < 0.07] = _BLACK


_PAINTERS = {
    "car": _paint_car,
    "truck": _paint_truck,
    "bus": _paint_bus,
    "trailer": _paint_trailer,
    "construction_vehicle": _paint_construction_vehicle,
    "pedestrian": _paint_pedestrian,
    "motorcycle": _paint_cycle,
    "bicycle": _paint_cycle,
    "barrier": _paint_barrier,
    "traffic_cone": _paint_traffic_cone,
}
"""Class -> painter of its details over the body colour (other classes stay plain body colour)."""


# ------------------------------------------------------------------------------------------------
# Background: ground, buildings, sky
# ------------------------------------------------------------------------------------------------


def _noise_tile(seed: int, size: int = 128, blur: float = 1.2) -> NDArray[np.float32]:
    """Tileable smooth noise, zero mean and unit variance."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size)).astype(np.float32)
    big = cv2.GaussianBlur(np.tile(a, (3, 3)), (0, 0), blur)
    a = big[size:2 * size, size:2 * size]
    return (a - a.mean()) / (a.std() + 1e-6)


class Renderer:
    """Renders the six cameras of one world."""

    def __init__(self, world: World, width: int, height: int):
        self.world = world
        self.cams = camera_models(width, height)
        seed = int(world.palette["noise_seed"])
        self.fine = _noise_tile(seed, 128, 0.8)
        self.coarse = _noise_tile(seed + 1, 64, 2.0)
        road = world.road
        c, s = math.cos(-road.theta), math.sin(-road.theta)
        sun = world.sun
        self.sun_road = np.array([c * sun[0] - s * sun[1], s * sun[0] + c * sun[1], sun[2]])
        look = world.look  # style.SceneLook, or None: the default look's constants
        self.look = look
        self.ambient = AMBIENT if look is None else look.ambient
        self.diffuse = DIFFUSE if look is None else look.diffuse
        self.haze_m = 900.0 if look is None else look.haze_m

    # -- background ----------------------------------------------------------------------------
    def _ground_colors(self, u: NDArray, r: NDArray) -> NDArray[np.float64]:
        road = self.world.road
        pal = self.world.palette
        hr, n, sw = road.half_road, road.n_lanes, road.sidewalk_w
        ar = np.abs(r)
        iu = (np.floor(u / 0.12).astype(np.int64)) % 128
        ir = (np.floor(r / 0.12).astype(np.int64)) % 128
        fine = self.fine[iu, ir]
        cu = (np.floor(u / 1.7).astype(np.int64)) % 64
        cr = (np.floor(r / 1.7).astype(np.int64)) % 64
        coarse = self.coarse[cu, cr]
        if road.cross_u is not None:
            dc = u - road.cross_u
        else:
            dc = np.full_like(u, 1e6)
        adc = np.abs(dc)
        in_main = ar <= hr
        in_cross = adc <= hr
        on_road = in_main | in_cross
        on_side = ~on_road & ((ar <= hr + sw) | (adc <= hr + sw))
        col = np.empty(u.shape + (3,))
        grass = np.array(pal["grass"])
        col[:] = grass * (1.0 + 0.10 * fine + 0.08 * coarse)[:, None]
        asph = pal["asphalt"] * (1.0 + 0.06 * fine + 0.05 * coarse)
        col[on_road] = asph[on_road, None]
        side_c = np.array(pal["sidewalk"])
        along = np.where(ar <= hr + sw, u, r)
        lat = np.where(ar <= hr + sw, r, dc)
        seam = (np.mod(along, 1.5) < 0.05) | (np.mod(lat, 1.5) < 0.05)
        shade = (1.0 + 0.04 * fine + 0.03 * coarse) * np.where(seam, 0.86, 1.0)
        col[on_side] = side_c * shade[on_side, None]
        kerb = on_side & (((ar - hr) < 0.22) & ~in_cross | ((adc - hr) < 0.22) & ~in_main)
        col[kerb] = side_c * 1.12
        white = np.array([218.0, 218.0, 212.0]) * (1.0 + 0.03 * fine)[:, None]
        yellow = np.array([212.0, 172.0, 42.0])

        def paint(mask, color):
            if np.ndim(color) == 2:
                col[mask] = color[mask]
            else:
                col[mask] = color

        for along_c, lat_c, other, on_this in ((u, ar, adc, in_main), (r, adc, ar, in_cross)):
            if on_this is in_cross and road.cross_u is None:
                continue
            lat_signed = r if on_this is in_main else dc
            free = on_this & (other > hr + 0.3)
            paint(free & (np.abs(lat_c - 0.15) < 0.065), yellow)
            for i in range(1, n):
                paint(free & (np.abs(lat_c - LANE_W * i) < 0.07) & (np.mod(along_c, 9.0) < 3.0), white)
            paint(free & (np.abs(lat_c - LANE_W * n) < 0.08), white)
            if road.cross_u is not None:
                zebra = on_this & (other > hr + 0.8) & (other < hr + 3.8) & (lat_c < LANE_W * n) & (np.mod(lat_signed, 1.1) < 0.55)
                paint(zebra, white)
                # stop line on the approaching side of each direction
                other_signed = dc if on_this is in_main else r
                approach = (lat_signed < 0) & (other_signed < 0) | (lat_signed > 0) & (other_signed > 0)
                if on_this is in_cross:
                    approach = (lat_signed > 0) & (other_signed < 0) | (lat_signed < 0) & (other_signed > 0)
                stop = on_this & (other > hr + 4.2) & (other < hr + 4.6) & (lat_c < LANE_W * n) & (lat_c > 0.3) & approach
                paint(stop, white)
        return col

    def _facades(self, uo, ro, zo, du, dr, dz):
        """Nearest building-front hit: (t, normal (2,) per pixel, along coordinate, z, colour index)."""
        road = self.world.road
        f = road.facade_dist
        shape = du.shape
        best_t = np.full(shape, np.inf, dtype=np.float64)
        best_side = np.full(shape, -1, dtype=np.int8)
        best_a = np.zeros(shape)
        best_z = np.zeros(shape)
        best_seg = np.zeros(shape, dtype=np.intp)
        sides = [("main+", "r", f), ("main-", "r", -f)]
        if road.cross_u is not None:
            sides += [("cross-", "u", road.cross_u - f), ("cross+", "u", road.cross_u + f)]
        with np.errstate(divide="ignore", invalid="ignore"):
            for si, (key, coord, val) in enumerate(sides):
                fac = road.facades[key]
                if coord == "r":
                    t = (val - ro) / dr
                    a = uo + t * du
                    ok = np.isfinite(t) & (t > 0)
                    if road.cross_u is not None:
                        ok &= np.abs(a - road.cross_u) >= f
                else:
                    t = (val - uo) / du
                    a = ro + t * dr
                    ok = np.isfinite(t) & (t > 0) & (np.abs(a) >= f)
                z = zo + t * dz
                ok &= (z >= 0) & (t < best_t)
                idx = np.flatnonzero(ok)
                hgt, seg = fac.lookup(a.ravel()[idx])
                keep = z.ravel()[idx] <= hgt
                idx, seg = idx[keep], seg[keep]
                best_t.ravel()[idx] = t.ravel()[idx]
                best_side.ravel()[idx] = si
                best_a.ravel()[idx] = a.ravel()[idx]
                best_z.ravel()[idx] = z.ravel()[idx]
                best_seg.ravel()[idx] = seg
        return best_t, best_side, best_a, best_z, best_seg, sides

    def _facade_colors(self, side_idx, a, z, seg, sides) -> NDArray[np.float64]:
        road = self.world.road
        col = np.zeros(a.shape + (3,))
        light = np.zeros(a.shape)
        normals = {"main+": (0.0, -1.0), "main-": (0.0, 1.0), "cross-": (1.0, 0.0), "cross+": (-1.0, 0.0)}
        for si, (key, _, _) in enumerate(sides):
            m = side_idx == si
            if not m.any():
                continue
            fac = road.facades[key]
            col[m] = fac.colors[seg[m]]
            nrm = normals[key]
            light[m] = self.ambient + self.diffuse * max(0.0, nrm[0] * self.sun_road[0] + nrm[1] * self.sun_road[1])
            hgt = fac.heights[seg[m]]
            zz, aa = z[m], a[m] - fac.bounds[seg[m]]
            floors = (zz > 3.6) & (np.mod(zz - 3.6, 3.2) > 0.8) & (np.mod(zz - 3.6, 3.2) < 2.5) & \
                (np.mod(aa, 2.8) > 0.7) & (np.mod(aa, 2.8) < 2.1) & (zz < hgt - 0.8)
            shop = (zz > 0.4) & (zz < 2.7) & (np.mod(aa, 6.0) > 0.6) & (np.mod(aa, 6.0) < 4.8)
            cornice = zz > hgt - 0.45
            sub = col[m]
            sub[floors | shop] = (62.0, 74.0, 90.0)
            sub[cornice] = sub[cornice] * 0.72
            col[m] = sub
        return col * light[:, None] if col.ndim == 2 else col

    def background(self, cam: CameraModel, ego2global: NDArray[np.float64]):
        """(rgb float (H,W,3), depth (H,W), is_ground mask) of ground, buildings and sky."""
        road = self.world.road
        pal = self.world.palette
        ex, ey = ego2global[0, 3], ego2global[1, 3]
        eyaw = math.atan2(ego2global[1, 0], ego2global[0, 0])
        alpha = eyaw - road.theta
        c, s = math.cos(alpha), math.sin(alpha)
        ue, re_ = road.to_road(np.array([ex, ey]))
        d = cam.rays_ego
        du = c * d[..., 0] - s * d[..., 1]
        dr = s * d[..., 0] + c * d[..., 1]
        dz = d[..., 2]
        o = cam.origin_ego
        uo = ue + c * o[0] - s * o[1]
        ro = re_ + s * o[0] + c * o[1]
        zo = o[2]
        t_fac, side_idx, fa, fz, fseg, sides = self._facades(uo, ro, zo, du.astype(np.float64), dr.astype(np.float64), dz)
        tg = cam.ground_t.astype(np.float64)
        ground = np.isfinite(tg) & (tg < t_fac)
        facade = np.isfinite(t_fac) & ~ground
        depth = np.where(ground, tg, np.where(facade, t_fac, np.inf))

        rgb = np.empty(d.shape[:2] + (3,))
        # sky
        el = dz / np.linalg.norm(d, axis=-1)
        k = np.clip(el * 2.2, 0.0, 1.0) ** 0.7
        hz = np.array(pal["sky_horizon"])
        ze = np.array(pal["sky_zenith"])
        rgb[:] = hz + (ze - hz) * k[..., None]
        # ground
        gu = uo + tg[ground] * du[ground]
        gr = ro + tg[ground] * dr[ground]
        rgb[ground] = self._ground_colors(gu, gr) * (self.ambient + self.diffuse * self.world.sun[2])
        # facades
        if facade.any():
            rgb[facade] = self._facade_colors(side_idx[facade], fa[facade], fz[facade], fseg[facade], sides)
        # haze
        dist = depth * cam.ray_norm
        fog = np.where(np.isfinite(dist), 1.0 - np.exp(-np.nan_to_num(dist, posinf=1e9) / self.haze_m), 0.0)
        rgb = rgb * (1 - fog[..., None]) + hz * fog[..., None]
        if self.look is not None:
            rgb = np.clip(rgb @ self.look.background_matrix.T, 0.0, 255.0)
        return rgb, depth, ground

    # -- styles (see style.py) ------------------------------------------------------------------
    def _styled_object(self, base: NDArray[np.float64], obj: SynthObject, axis: NDArray,
                       hn: NDArray) -> NDArray[np.float64]:
        """Per-object hue rotation and procedural texture of a styled world (RGB 0..255)."""
        look = obj.style["look"]
        if look["matrix"] is not None:
            base = np.clip(base @ np.asarray(look["matrix"]).T, 0.0, 255.0)
        amp = float(look["texture"])
        if amp > 0.0:
            p = hn * np.asarray(obj.size)  # metres in the box frame
            # the two in-face coordinates of each hit: (y, z) on x faces, (x, z) on y, (x, y) on z
            a = np.where(axis == 0, p[:, 1], p[:, 0])
            b = np.where(axis == 2, p[:, 1], p[:, 2])
            scale = float(look["texture_scale_m"])
            off_a, off_b = look["texture_offset_m"]
            ia = np.floor((a + off_a) / scale).astype(np.int64) % 128
            ib = np.floor((b + off_b) / scale).astype(np.int64) % 128
            base = base * np.clip(1.0 + amp * self.fine[ia, ib], 0.2, 2.0)[:, None]
        return base

    def _styled_camera(self, img: NDArray[np.float64], cam_name: str, noise_seed) -> NDArray[np.float32]:
        """Camera response of a styled world: exposure, white balance, gamma, blur, noise."""
        seed = list(noise_seed) if noise_seed is not None else [CAMERA_NAMES.index(cam_name)]
        look, rng = image_look(self.look.style, seed)
        gains = look.exposure * np.array([1.0 + look.warmth, 1.0, 1.0 - look.warmth])
        x = np.clip(img * gains / 255.0, 0.0, 1.0) ** look.gamma * 255.0
        x = x.astype(np.float32)
        if look.blur_sigma_px > 0.05:
            x = cv2.GaussianBlur(x, (0, 0), look.blur_sigma_px)
        if noise_seed is not None and look.noise_std > 0:
            x = x + look.noise_std * rng.standard_normal(x.shape, dtype=np.float32)
        return x

    # -- full render ---------------------------------------------------------------------------
    def render(self, cam_name: str, t_ego: float, objs: list[SynthObject], t_obj: float | None = None,
               noise_seed: int | None = None) -> RenderResult:
        """Render camera ``cam_name`` with the ego at time ``t_ego`` and ``objs`` at ``t_obj``
        (default ``t_ego``). ``noise_seed`` adds deterministic sensor noise."""
        cam = self.cams[cam_name]
        t_obj = t_ego if t_obj is None else t_obj
        ego2global = self.world.ego.matrix(t_ego)
        g2c = invert_transform(ego2global @ cam.cam2ego)
        rgb, depth, ground = self.background(cam, ego2global)
        H, W = depth.shape
        ids = np.full((H, W), -1, dtype=np.int32)
        n = len(objs)
        visible = np.zeros(n, dtype=np.int64)
        total = np.zeros(n, dtype=np.int64)
        boxes = [_camera_box(obj, g2c, t_obj) for obj in objs]
        self._cast_shadows(cam, boxes, g2c, rgb, depth, ground)
        hz = np.array(self.world.palette["sky_horizon"])
        if self.look is not None:  # the haze colour as the recoloured background shows it
            hz = np.clip(hz @ self.look.background_matrix.T, 0.0, 255.0)
        for oi, (obj, box) in enumerate(zip(objs, boxes)):
            total[oi] += self._draw_object(cam, oi, obj, box, rgb, depth, ids, hz)
        if n:
            cnt = np.bincount(ids[ids >= 0], minlength=n)
            visible[:] = cnt[:n]
        image = self._camera_response(rgb, cam_name, noise_seed)
        return RenderResult(image=image, ids=ids, depth=depth.astype(np.float32), visible=visible, total=total)

    def _cast_shadows(self, cam: CameraModel, boxes: list[_CameraBox], g2c: NDArray[np.float64],
                      rgb: NDArray[np.float64], depth: NDArray, ground: NDArray[np.bool_]) -> None:
        """Darken the ground pixels whose ray to the sun passes through a box (in place)."""
        H, W = depth.shape
        sun_c = g2c[:3, :3] @ self.world.sun
        shadow_factor = self.ambient / (self.ambient + self.diffuse * self.world.sun[2])
        for rot, centre, half in boxes:
            corners_l = _box_corners(half)
            # shadow footprint on the ground (global z = 0): local corners pushed along -sun
            sun_l = rot.T @ sun_c
            lift = corners_l[:, 2] + half[2]  # height above ground
            sun_l_z = max(sun_l[2], 0.2)
            foot = corners_l - sun_l[None] * (lift / sun_l_z)[:, None]
            pts = foot @ rot.T + centre
            rect = _clip_rect(pts, cam.K, W, H)
            if rect is None:
                continue
            r0, r1, c0, c1 = rect
            g = ground[r0:r1, c0:c1]
            if not g.any():
                continue
            rays = cam.rays_cam[r0:r1, c0:c1][g].astype(np.float64)
            tg = depth[r0:r1, c0:c1][g]
            o_l = (rays * tg[:, None] - centre) @ rot
            tn, tf, _ = _slab(o_l, np.broadcast_to(sun_l, o_l.shape), half)
            sh = (tn <= tf) & (tf > 0)
            if sh.any():
                sub = rgb[r0:r1, c0:c1]
                idx = np.flatnonzero(g.ravel())[sh]
                flat = sub.reshape(-1, 3)
                flat[idx] *= shadow_factor
                rgb[r0:r1, c0:c1] = flat.reshape(sub.shape)

    def _draw_object(self, cam: CameraModel, oi: int, obj: SynthObject, box: _CameraBox, rgb: NDArray[np.float64],
                     depth: NDArray, ids: NDArray[np.int32], hz: NDArray[np.float64]) -> int:
        """Ray-cast one box into the image where it is nearer than what is there (``rgb``, ``depth``
        and ``ids`` updated in place: shaded, hazed colour); returns its pixel count unoccluded."""
        rot, centre, half = box
        H, W = depth.shape
        corners = _box_corners(half) @ rot.T + centre
        rect = _clip_rect(corners, cam.K, W, H)
        if rect is None:
            return 0
        r0, r1, c0, c1 = rect
        rays = cam.rays_cam[r0:r1, c0:c1].astype(np.float64)
        d_l = rays @ rot
        o_l = -(centre @ rot)
        tn, tf, axis = _slab(np.broadcast_to(o_l, d_l.shape), d_l, half)
        hit = (tn <= tf) & (tn > NEAR)
        cnt = int(hit.sum())
        if cnt == 0:
            return 0
        dsub = depth[r0:r1, c0:c1]
        win = hit & (tn < dsub)
        if not win.any():
            return cnt
        tw = tn[win]
        ax = axis[win]
        dl = d_l[win]
        sign = -np.sign(np.take_along_axis(dl, ax[:, None], -1)[:, 0])
        p = o_l + tw[:, None] * dl
        hn = np.clip(p / (2 * half), -0.5, 0.5)
        base = object_colors(obj, ax, sign, hn)
        if obj.style.get("look") is not None:
            base = self._styled_object(base, obj, ax, hn)
        nl = np.zeros((ax.size, 3))
        nl[np.arange(ax.size), ax] = sign
        ng = nl @ _rot_z(obj.yaw).T
        light = self.ambient + self.diffuse * np.clip(ng @ self.world.sun, 0.0, None)
        col = base * light[:, None]
        dist = tw * cam.ray_norm[r0:r1, c0:c1][win]
        fog = 1.0 - np.exp(-dist / self.haze_m)
        col = col * (1 - fog[:, None]) + hz * fog[:, None]
        sub_rgb = rgb[r0:r1, c0:c1]
        sub_rgb[win] = col
        dsub[win] = tw
        ids[r0:r1, c0:c1][win] = oi
        return cnt

    def _camera_response(self, img: NDArray[np.float64], cam_name: str, noise_seed) -> NDArray[np.uint8]:
        """Blur and sensor noise of the default look (or the style's camera response), to uint8."""
        if self.look is None:  # the default look: exactly the original camera model
            img = cv2.GaussianBlur(img.astype(np.float32), (3, 3), 0.6)
            if noise_seed is not None:
                rng = np.random.default_rng(noise_seed)
                img = img + 2.0 * rng.standard_normal(img.shape, dtype=np.float32)
        else:
            img = self._styled_camera(img, cam_name, noise_seed)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
