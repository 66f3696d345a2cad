"""Appearance styles of SynthScenes: colours, textures, lighting and camera response.

A style changes how a scene *looks*, never what it *is*: the road layout, the ego route, the
objects, their boxes, the lidar points, the visibility levels and therefore every nuScenes table
are those of the default look for the same ``(seed, scene)``; only the JPEG images (and the style
recorded in ``synth_meta.json``) differ. That makes a cross-style comparison a controlled one:
the same scenes, other pixels.

The default look is no style at all (``SynthConfig.style = None``): the renderer then runs the
exact code path it always ran, so existing datasets regenerate byte-identically. A style draws
its random choices from a generator of its own (seeded by the master seed, the scene index and
the style's parameters), so the geometry's random stream is untouched.

Ranges are ``(low, high)`` tuples drawn uniformly; ``(x, x)`` fixes the value. Colours are RGB
in 0..255. Camera-response parameters are drawn per camera image.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .palette import CAR_COLORS, CLOTH_COLORS, TRUCK_CAB_COLORS, jitter

Range = tuple[float, float]

OBJECT_COLOR_MODES = ("class", "random", "swapped")
BACKGROUND_COLOR_MODES = ("default", "random")

# Colour a "swapped" style borrows for each class: another class's palette, so colour alone
# points at the wrong class.
SWAP_SOURCE: dict[str, str] = {
    "car": "bus", "bus": "car", "truck": "construction_vehicle", "construction_vehicle": "truck",
    "trailer": "traffic_cone", "traffic_cone": "trailer", "pedestrian": "barrier", "barrier": "pedestrian",
    "motorcycle": "construction_vehicle", "bicycle": "bus",
}


@dataclass(frozen=True)
class SynthStyle:
    """Randomisation ranges of one appearance style (see the module doc).

    Attributes:
        name: style name (recorded in ``synth_meta.json``; part of the style's random seed).
        object_colors: ``"class"`` keeps each class's palette of the default look (yellow buses,
            orange cones...); ``"random"`` draws every colour slot of every object (body, cargo,
            clothes, stripes) uniformly in HSV, whatever the class; ``"swapped"`` paints each
            class with another class's palette (``SWAP_SOURCE``).
        object_saturation / object_value: HSV saturation and value (0..1) ranges of the
            ``"random"`` object colours.
        object_hue_jitter_deg: half-range of a per-object hue rotation applied to *all* of its
            rendered colours, fixed parts included (glass, lamps, hazard stripes).
        object_texture: range of the amplitude (relative brightness std) of a per-object
            procedural texture; 0 = flat paint.
        object_texture_scale_m: range of the texture's feature size on the object, metres.
        background_colors: ``"default"`` keeps the scene palette (asphalt, sidewalk, grass, sky,
            buildings) of the default look; ``"random"`` redraws every slot in HSV.
        background_hue_jitter_deg: half-range of a per-scene hue rotation of the background.
        background_saturation: range of a per-scene saturation factor of the background.
        asphalt_gray: range of the asphalt grey level with ``background_colors="random"``.
        sun_elevation_deg: range of the sun elevation above the horizon, degrees (azimuth uniform).
        ambient / diffuse: ranges of the ambient and sun (Lambert) light factors (default look:
            0.55 and 0.6).
        haze_m: range of the haze distance (colour reaches 63 % of the horizon colour), metres.
        exposure: range of the per-image gain of the camera.
        gamma: range of the per-image response exponent (output = input ** gamma, 0..1 scale).
        warmth: range of the per-image white-balance shift: red x (1 + w), blue x (1 - w).
        blur_sigma_px: range of the per-image Gaussian blur sigma, pixels of the written image.
        noise_std: range of the per-image Gaussian sensor noise std, grey levels.
        unstyled_fraction: share of the scenes (each drawn at random) left in the default look,
            so that one dataset mixes both (0 = every scene styled).
    """

    name: str = "custom"
    object_colors: str = "class"
    object_saturation: Range = (0.05, 0.9)
    object_value: Range = (0.15, 0.95)
    object_hue_jitter_deg: float = 0.0
    object_texture: Range = (0.0, 0.0)
    object_texture_scale_m: Range = (0.1, 0.4)
    background_colors: str = "default"
    background_hue_jitter_deg: float = 0.0
    background_saturation: Range = (1.0, 1.0)
    asphalt_gray: Range = (58.0, 92.0)
    sun_elevation_deg: Range = (30.0, 65.0)
    ambient: Range = (0.55, 0.55)
    diffuse: Range = (0.6, 0.6)
    haze_m: Range = (900.0, 900.0)
    exposure: Range = (1.0, 1.0)
    gamma: Range = (1.0, 1.0)
    warmth: Range = (0.0, 0.0)
    blur_sigma_px: Range = (0.6, 0.6)
    noise_std: Range = (2.0, 2.0)
    unstyled_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.object_colors not in OBJECT_COLOR_MODES:
            raise ValueError(f"style {self.name!r}: object_colors must be one of {OBJECT_COLOR_MODES}, "
                             f"got {self.object_colors!r}")
        if self.background_colors not in BACKGROUND_COLOR_MODES:
            raise ValueError(f"style {self.name!r}: background_colors must be one of {BACKGROUND_COLOR_MODES}, "
                             f"got {self.background_colors!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (list, tuple)):
                if len(v) != 2 or not all(math.isfinite(float(x)) for x in v) or float(v[0]) > float(v[1]):
                    raise ValueError(f"style {self.name!r}: {f.name} must be a (low, high) range with low <= high, "
                                     f"got {v!r}")
                object.__setattr__(self, f.name, (float(v[0]), float(v[1])))
        for key, lo in (("haze_m", 1.0), ("exposure", 0.01), ("gamma", 0.05), ("ambient", 0.0), ("diffuse", 0.0),
                        ("blur_sigma_px", 0.0), ("noise_std", 0.0), ("object_texture_scale_m", 0.01)):
            if getattr(self, key)[0] < lo:
                raise ValueError(f"style {self.name!r}: {key} must be >= {lo}, got {getattr(self, key)}")
        if not -5.0 <= self.sun_elevation_deg[0] and self.sun_elevation_deg[1] <= 90.0:
            raise ValueError(f"style {self.name!r}: sun_elevation_deg must lie in [-5, 90]")
        if not 0.0 <= self.unstyled_fraction < 1.0:
            raise ValueError(f"style {self.name!r}: unstyled_fraction must be in [0, 1), got {self.unstyled_fraction}")
        if not (-0.9 <= self.warmth[0] and self.warmth[1] <= 0.9):
            raise ValueError(f"style {self.name!r}: warmth must lie in [-0.9, 0.9]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SynthStyle":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown style field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def seed_key(self) -> int:
        """32-bit key of the style's parameters (part of its random generators' seeds)."""
        return zlib.crc32(json.dumps(self.to_dict(), sort_keys=True).encode("utf-8"))


STYLES: dict[str, SynthStyle] = {
    # grey, diffuse light, faint shadows, desaturated scene, soft and noisier images
    "overcast": SynthStyle(
        name="overcast", background_saturation=(0.3, 0.55), sun_elevation_deg=(55.0, 85.0),
        ambient=(0.78, 0.92), diffuse=(0.08, 0.22), haze_m=(250.0, 450.0), exposure=(0.8, 0.95),
        gamma=(1.0, 1.1), warmth=(-0.06, 0.0), blur_sigma_px=(0.7, 1.1), noise_std=(3.0, 5.0)),
    # low warm sun, long shadows, dark and noisy images
    "dusk": SynthStyle(
        name="dusk", background_saturation=(0.8, 1.1), sun_elevation_deg=(4.0, 12.0),
        ambient=(0.28, 0.4), diffuse=(0.6, 0.8), haze_m=(400.0, 700.0), exposure=(0.55, 0.75),
        gamma=(1.1, 1.25), warmth=(0.18, 0.32), blur_sigma_px=(0.6, 0.9), noise_std=(5.0, 8.0)),
    # high sun, hard contrast, bright and crisp images
    "harsh": SynthStyle(
        name="harsh", sun_elevation_deg=(65.0, 85.0), ambient=(0.3, 0.4), diffuse=(0.9, 1.1),
        haze_m=(1200.0, 2000.0), exposure=(1.15, 1.35), gamma=(0.85, 0.95), warmth=(-0.05, 0.05),
        blur_sigma_px=(0.3, 0.5), noise_std=(1.0, 2.0)),
    # the default lighting, but every class painted with another class's palette
    "swapped": SynthStyle(name="swapped", object_colors="swapped", object_hue_jitter_deg=10.0),
    # domain randomisation for training: any colour on any class, textures, any palette and light
    "random": SynthStyle(
        name="random", object_colors="random", object_hue_jitter_deg=180.0, object_texture=(0.0, 0.35),
        object_texture_scale_m=(0.08, 0.6), background_colors="random", background_hue_jitter_deg=180.0,
        background_saturation=(0.3, 1.3), asphalt_gray=(30.0, 140.0), sun_elevation_deg=(5.0, 85.0),
        ambient=(0.25, 0.9), diffuse=(0.1, 1.0), haze_m=(250.0, 2000.0), exposure=(0.6, 1.4),
        gamma=(0.8, 1.25), warmth=(-0.2, 0.3), blur_sigma_px=(0.3, 1.5), noise_std=(1.0, 8.0)),
}
# training mix: "random" in 60 % of the scenes, the default look in the others
STYLES["random-mix"] = dataclasses.replace(STYLES["random"], name="random-mix", unstyled_fraction=0.4)
"""Named styles; ``"default"`` (the original look) is ``None`` and not listed here."""

STYLE_NAMES = ("default", *STYLES)


def resolve_style(style: "SynthStyle | str | dict | Path | None") -> SynthStyle | None:
    """A ``SynthStyle`` from a name (``"default"`` -> ``None``), a JSON file, a dict or a style.

    Raises ``ValueError`` naming the known styles for an unknown name.
    """
    if style is None or isinstance(style, SynthStyle):
        return style
    if isinstance(style, dict):
        return SynthStyle.from_dict(style)
    text = str(style)
    if text == "default":
        return None
    if text in STYLES:
        return STYLES[text]
    if text.endswith(".json"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"style file {path} not found")
        d = json.loads(path.read_text())
        d.setdefault("name", path.stem)
        return SynthStyle.from_dict(d)
    raise ValueError(f"unknown style {text!r}; known: {', '.join(STYLE_NAMES)} (or a .json file of SynthStyle fields)")


# ------------------------------------------------------------------------------------------------
# Colour helpers
# ------------------------------------------------------------------------------------------------


def hue_saturation_matrix(hue_deg: float, saturation: float = 1.0) -> NDArray[np.float64]:
    """3x3 RGB matrix: rotate hue by ``hue_deg`` about the grey axis, then scale saturation.

    Greys stay grey; applied as ``rgb @ M.T``.
    """
    a = math.radians(hue_deg)
    c, s = math.cos(a), math.sin(a)
    k = 1.0 / 3.0
    q = math.sqrt(k)
    rot = np.array([
        [c + (1 - c) * k, k * (1 - c) - q * s, k * (1 - c) + q * s],
        [k * (1 - c) + q * s, c + (1 - c) * k, k * (1 - c) - q * s],
        [k * (1 - c) - q * s, k * (1 - c) + q * s, c + (1 - c) * k],
    ])
    sat = saturation * np.eye(3) + (1.0 - saturation) * np.full((3, 3), k)
    return sat @ rot


def _uniform(rng: np.random.Generator, r: Range) -> float:
    return float(r[0]) if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def _hsv_color(rng: np.random.Generator, sat: Range, val: Range) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(float(rng.random()), _uniform(rng, sat), _uniform(rng, val))
    return (255.0 * r, 255.0 * g, 255.0 * b)


# ------------------------------------------------------------------------------------------------
# Applying a style to a world
# ------------------------------------------------------------------------------------------------


@dataclass
class SceneLook:
    """Per-scene rendering parameters a style drew (``World.look``; ``None`` = default look).

    ``background_matrix`` (3x3) recolours ground, buildings and sky (``rgb @ M.T``).
    """

    style: SynthStyle
    ambient: float
    diffuse: float
    haze_m: float
    background_matrix: NDArray[np.float64]


@dataclass
class ImageLook:
    """Per-image camera response a style drew: gain, gamma, white balance, blur, noise."""

    exposure: float
    gamma: float
    warmth: float
    blur_sigma_px: float
    noise_std: float


def _class_palettes() -> dict[str, NDArray[np.float64]]:
    return {
        "car": CAR_COLORS, "truck": TRUCK_CAB_COLORS, "bus": np.array([(232.0, 192, 28)]),
        "trailer": np.array([(190.0, 192, 196)]), "construction_vehicle": np.array([(246.0, 138, 12)]),
        "pedestrian": CLOTH_COLORS, "motorcycle": CLOTH_COLORS, "bicycle": CLOTH_COLORS,
        "barrier": np.array([(200.0, 30, 30), (235.0, 120, 20)]), "traffic_cone": np.array([(245.0, 110, 20)]),
    }


COLOR_SLOTS = ("body", "cargo", "shirt", "pants", "skin", "helmet", "stripe")
"""Every colour key of ``SynthObject.style`` that ``render.object_colors`` reads."""


def _object_style(rng: np.random.Generator, style: SynthStyle, cls: str, old: dict) -> dict:
    out = dict(old)  # keeps non-colour keys ("rider") and the default colours for mode "class"
    if style.object_colors == "random":
        for slot in COLOR_SLOTS:
            out[slot] = _hsv_color(rng, style.object_saturation, style.object_value)
    elif style.object_colors == "swapped":
        pal = _class_palettes()[SWAP_SOURCE[cls]]
        for slot in COLOR_SLOTS:
            out[slot] = jitter(rng, pal[rng.integers(len(pal))], 12.0)
    hue = _uniform(rng, (-style.object_hue_jitter_deg, style.object_hue_jitter_deg))
    out["look"] = {
        "matrix": hue_saturation_matrix(hue) if hue else None,
        "texture": _uniform(rng, style.object_texture),
        "texture_scale_m": _uniform(rng, style.object_texture_scale_m),
        "texture_offset_m": (float(rng.uniform(0, 50)), float(rng.uniform(0, 50))),
    }
    return out


def apply_style(world, style: SynthStyle) -> None:
    """Repaint ``world`` (a ``world.World``) in ``style``: object colours, palette, facades, sun.

    Draws from its own generator (seed, scene index, style key): geometry is untouched.
    """
    rng = np.random.default_rng([int(world.seed) & 0xFFFFFFFF, int(world.index), 0x57E1E, style.seed_key()])
    if style.unstyled_fraction > 0.0 and rng.random() < style.unstyled_fraction:
        return  # this scene keeps the default look (world.look stays None)
    # lighting
    az = float(rng.uniform(-math.pi, math.pi))
    el = math.radians(_uniform(rng, style.sun_elevation_deg))
    world.sun = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    # background palette
    pal = dict(world.palette)
    if style.background_colors == "random":
        bs, bv = (0.05, 0.6), (0.3, 0.9)
        pal["asphalt"] = _uniform(rng, style.asphalt_gray)
        pal["sidewalk"] = _hsv_color(rng, bs, (0.45, 0.85))
        pal["grass"] = _hsv_color(rng, (0.2, 0.8), (0.2, 0.7))
        zenith = _hsv_color(rng, bs, bv)
        pal["sky_zenith"] = zenith
        pal["sky_horizon"] = tuple(float(0.5 * z + 0.5 * 225.0) for z in zenith)
        for fac in world.road.facades.values():
            fac.colors = np.array([_hsv_color(rng, (0.05, 0.7), (0.25, 0.9)) for _ in range(len(fac.colors))])
    else:
        pal["asphalt"] = _uniform(rng, style.asphalt_gray) if style.asphalt_gray != (58.0, 92.0) else pal["asphalt"]
    world.palette = pal
    bg = hue_saturation_matrix(_uniform(rng, (-style.background_hue_jitter_deg, style.background_hue_jitter_deg)),
                               _uniform(rng, style.background_saturation))
    world.look = SceneLook(style=style, ambient=_uniform(rng, style.ambient), diffuse=_uniform(rng, style.diffuse),
                           haze_m=_uniform(rng, style.haze_m), background_matrix=bg)
    # objects, in index order, each from a generator of its own (stable if the object list changes)
    for obj in world.objects:
        orng = np.random.default_rng([int(world.seed) & 0xFFFFFFFF, int(world.index), 0x0B1EC7,
                                      style.seed_key(), int(obj.index)])
        obj.style = _object_style(orng, style, obj.cls, obj.style)


def image_look(style: SynthStyle, noise_seed: list[int]) -> tuple[ImageLook, np.random.Generator]:
    """Camera response of one image and the generator for its sensor noise."""
    rng = np.random.default_rng([*noise_seed, 0x57E1E, style.seed_key()])
    look = ImageLook(exposure=_uniform(rng, style.exposure), gamma=_uniform(rng, style.gamma),
                     warmth=_uniform(rng, style.warmth), blur_sigma_px=_uniform(rng, style.blur_sigma_px),
                     noise_std=_uniform(rng, style.noise_std))
    return look, rng
