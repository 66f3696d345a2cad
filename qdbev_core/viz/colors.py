"""One fixed colour per detection class (RGB, 0-255), shared by every picture."""

from __future__ import annotations

from ..classes import CLASS_NAMES

CLASS_COLORS_RGB: dict[str, tuple[int, int, int]] = {
    "car": (31, 119, 180),
    "truck": (255, 127, 14),
    "construction_vehicle": (140, 86, 75),
    "bus": (214, 39, 40),
    "trailer": (148, 103, 189),
    "barrier": (127, 127, 127),
    "motorcycle": (227, 119, 194),
    "bicycle": (188, 189, 34),
    "pedestrian": (23, 190, 207),
    "traffic_cone": (255, 187, 120),
}
assert set(CLASS_COLORS_RGB) == set(CLASS_NAMES)
