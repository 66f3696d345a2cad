"""The ten nuScenes detection classes, in the order every model output uses."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)
"""Class names; index ``i`` is model class ``i``. ``ObjectHypothesis.class_id`` carries the name."""

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

EVAL_RANGE_M: dict[str, float] = {
    "car": 50.0,
    "truck": 50.0,
    "bus": 50.0,
    "trailer": 50.0,
    "construction_vehicle": 50.0,
    "pedestrian": 40.0,
    "motorcycle": 40.0,
    "bicycle": 40.0,
    "traffic_cone": 30.0,
    "barrier": 30.0,
}
"""Per-class evaluation radius in metres around the ego (detection_cvpr_2019 ``class_range``)."""

# nuScenes category name (the `category` table) for each detection class. The devkit maps
# categories to detection classes with `category_to_detection_name`; these are inverses of it.
CATEGORY_OF_CLASS: dict[str, str] = {
    "car": "vehicle.car",
    "truck": "vehicle.truck",
    "construction_vehicle": "vehicle.construction",
    "bus": "vehicle.bus.rigid",
    "trailer": "vehicle.trailer",
    "barrier": "movable_object.barrier",
    "motorcycle": "vehicle.motorcycle",
    "bicycle": "vehicle.bicycle",
    "pedestrian": "human.pedestrian.adult",
    "traffic_cone": "movable_object.trafficcone",
}


def default_attribute(class_name: str, speed_mps: float) -> str:
    """The nuScenes attribute name a detection of ``class_name`` moving at ``speed_mps`` gets.

    Follows the rule BEVFormer/mmdet3d use when a model predicts no attribute: vehicles are
    ``moving``/``parked``, two-wheelers ``with_rider``/``without_rider``, pedestrians
    ``moving``/``standing``; barriers and cones have none ("").
    """
    moving = speed_mps > 0.2
    if class_name in ("car", "truck", "construction_vehicle", "bus", "trailer"):
        return "vehicle.moving" if moving else "vehicle.parked"
    if class_name in ("motorcycle", "bicycle"):
        return "cycle.with_rider" if moving else "cycle.without_rider"
    if class_name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    return ""
