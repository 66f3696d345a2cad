"""Default colours of SynthScenes objects and buildings (RGB 0..255) and the per-object draw."""

from __future__ import annotations

import numpy as np

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


def jitter(rng: np.random.Generator, c, amount: float = 10.0) -> tuple[float, float, float]:
    """``c`` (RGB) plus uniform noise in ``[-amount, amount]`` per channel, clipped to 0..255."""
    v = np.clip(np.asarray(c, dtype=np.float64) + rng.uniform(-amount, amount, 3), 0, 255)
    return (float(v[0]), float(v[1]), float(v[2]))


def object_style(rng: np.random.Generator, cls: str, moving: bool) -> dict:
    """Colours of one object of class ``cls`` (``SynthObject.style``; ``rider`` for moving cycles)."""
    pick = lambda arr: jitter(rng, arr[rng.integers(len(arr))])  # noqa: E731
    if cls == "car":
        return {"body": pick(CAR_COLORS)}
    if cls == "truck":
        return {"body": pick(TRUCK_CAB_COLORS), "cargo": jitter(rng, np.array([205.0, 205, 200]), 25)}
    if cls == "bus":
        return {"body": jitter(rng, np.array([232.0, 192, 28]), 12)}
    if cls == "trailer":
        return {"body": jitter(rng, np.array([190.0, 192, 196]), 20)}
    if cls == "construction_vehicle":
        return {"body": jitter(rng, np.array([246.0, 138, 12]), 8)}
    if cls == "pedestrian":
        return {"skin": pick(SKIN_COLORS), "shirt": pick(CLOTH_COLORS), "pants": pick(PANTS_COLORS)}
    if cls in ("motorcycle", "bicycle"):
        return {"body": pick(CLOTH_COLORS), "shirt": pick(CLOTH_COLORS), "helmet": pick(CLOTH_COLORS),
                "rider": bool(moving)}
    if cls == "barrier":
        return {"stripe": (200.0, 30.0, 30.0) if rng.random() < 0.7 else (235.0, 120.0, 20.0)}
    if cls == "traffic_cone":
        return {"body": jitter(rng, np.array([245.0, 110, 20]), 8)}
    return {}
