"""Every ``qdbev_node`` parameter, declared once: name, type (from the default), default, range or
choices, description and whether it can change while the node runs.

``qdbev_ros.node`` declares its parameters from ``NODE_PARAMETERS`` (ranges become the
``ParameterDescriptor``'s ``floating_point_range`` / ``integer_range``; choices and ``pattern``
are checked at startup); ``launch/*.launch.py`` describe their ``model`` / ``backend`` /
``camera_namespace`` / ``image_transport`` arguments with ``launch_argument_description``.
``test/unit/test_node_parameters.py`` keeps ``config/qdbev.yaml``, the parameter table in
``docs/NODE.md`` (``markdown_table()`` writes it) and the README's list of run-time parameters in
agreement with it; ``test/unit/test_launch_files.py`` the launch arguments. ROS-free and
dependency-free (plain data), so offline tools and the launch files can import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LIVE_PARAMETERS",
    "NODE_PARAMETERS",
    "PARAMETERS_BY_NAME",
    "PARAMETER_NAMES",
    "PARAMS_FILE_DIFFERS",
    "NodeParameter",
    "defaults",
    "launch_argument_description",
    "markdown_table",
]


@dataclass(frozen=True)
class NodeParameter:
    """One node parameter.

    Attributes:
        name: parameter name.
        default: built-in value; its Python type is the parameter's type (``str``, ``int``,
            ``float``, ``bool`` or ``list[str]``).
        description: what it does, with units.
        live: True when ``ros2 param set`` may change it at run time (applied from the next
            camera set); every other parameter is declared read-only.
        low, high: inclusive range of a number (``None``: unbounded).
        choices: the accepted strings (empty: any).
        pattern: a regular expression the whole string must match (empty: any), with
            ``pattern_hint`` saying what it accepts.
    """

    name: str
    default: Any
    description: str
    live: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ""
    pattern_hint: str = ""

    @property
    def type_name(self) -> str:
        """``string``, ``integer``, ``double``, ``bool`` or ``string_array`` (ROS parameter types)."""
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "integer"
        if isinstance(self.default, float):
            return "double"
        if isinstance(self.default, list):
            return "string_array"
        return "string"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not accepted (choices / pattern; ranges are checked by ROS), or ``None``."""
        if self.choices and value not in self.choices:
            return f"parameter {self.name!r} is {value!r}; use one of {', '.join(self.choices)}"
        if self.pattern and not re.fullmatch(self.pattern, str(value)):
            return f"parameter {self.name!r} is {value!r}; use {self.pattern_hint}"
        return None


NODE_PARAMETERS: tuple[NodeParameter, ...] = (
    NodeParameter("model", "", "Model: a name in models/manifest.yaml or a path to a .safetensors file (with its "
                  ".json sidecar)."),
    NodeParameter("backend", "auto", "Inference backend: auto (the fastest CPU path of the model whose accuracy "
                  "was checked: torch, onnxruntime int8 or fp32; timed once per machine and model, then cached, "
                  "docs/BENCHMARKS.md) | torch | onnxruntime | tensorrt (GPU)."),
    NodeParameter("device", "cpu", "Device of the torch / tensorrt backend: cpu | cuda | cuda:<index> (auto: cpu).",
                  pattern=r"cpu|cuda(:\d+)?", pattern_hint="cpu, cuda or cuda:<index>"),
    NodeParameter("score_threshold", 0.05, "Detections scoring below this are not published [0, 1].", live=True,
                  low=0.0, high=1.0),
    NodeParameter("max_detections", 300, "At most this many detections per frame (top-k over queries x classes).",
                  live=True, low=1, high=10000),
    NodeParameter("camera_namespace", "/cameras", "Prefix of the default topics <ns>/<CAMERA>/image_raw[/compressed] "
                  "and <ns>/<CAMERA>/camera_info."),
    NodeParameter("image_topics", [""] * 6, "Six image topics in CAM_FRONT, CAM_FRONT_RIGHT, CAM_FRONT_LEFT, "
                  "CAM_BACK, CAM_BACK_LEFT, CAM_BACK_RIGHT order; an empty string uses the camera_namespace default."),
    NodeParameter("camera_info_topics", [""] * 6, "Six CameraInfo topics in the same order; empty = "
                  "<ns>/<CAMERA>/camera_info."),
    NodeParameter("image_transport", "raw", "raw: sensor_msgs/Image (rgb8, bgr8) | compressed: "
                  "sensor_msgs/CompressedImage (JPEG, PNG).", choices=("raw", "compressed")),
    NodeParameter("image_qos_depth", 5, "History depth of the sensor-data (best effort) image subscriptions.",
                  low=1, high=100),
    NodeParameter("slop", 0.06, "Approximate-time sync: largest stamp span of one camera set, seconds. 0.06 > the "
                  "~42 ms span of a nuScenes set and < one 12 Hz period (83 ms), so a set never takes two frames of "
                  "one camera.", live=True, low=0.001, high=1.0),
    NodeParameter("queue_size", 10, "Approximate-time sync: messages queued per camera.", live=True, low=1, high=100),
    NodeParameter("frame_id", "base_link", "Frame of the detections and the frame the camera extrinsics map into."),
    NodeParameter("calibration_source", "tf", "Where camera -> frame_id extrinsics come from: tf (TF static, looked "
                  "up by each CameraInfo's header.frame_id) | file (calibration_file).", choices=("tf", "file")),
    NodeParameter("calibration_file", "calibration_nuscenes.yaml", "Calibration YAML for calibration_source=file "
                  "(absolute, relative to the working directory, or a file name in the package's config/)."),
    NodeParameter("ego_pose_source", "tf", "Ego motion for the temporal BEV: tf (odom_frame -> frame_id on /tf) | "
                  "odometry (nav_msgs/Odometry on odometry_topic) | none (every frame starts a new sequence).",
                  choices=("tf", "odometry", "none")),
    NodeParameter("odom_frame", "odom", "Fixed frame of the ego pose (ego_pose_source=tf)."),
    NodeParameter("odometry_topic", "/odom", "nav_msgs/Odometry topic (ego_pose_source=odometry)."),
    NodeParameter("ego_pose_tolerance_s", 0.1, "Use the ego pose nearest to the frame stamp if within this many "
                  "seconds.", live=True, low=0.0, high=10.0),
    NodeParameter("camera_timeout_s", 1.0, "A camera without images for this long is reported ERROR (and, unless "
                  "allow_missing_cameras, no detections are published).", live=True, low=0.05, high=3600.0),
    NodeParameter("allow_missing_cameras", False, "Keep detecting while some cameras are stale (a black image stands "
                  "in for each); off = no output rather than degraded output.", live=True),
    NodeParameter("publish_markers", True, "Publish ~/markers (visualization_msgs/MarkerArray) for RViz."),
    NodeParameter("publish_autoware_objects", False, "Also publish ~/objects (autoware_perception_msgs/"
                  "DetectedObjects) for Autoware's perception stack (docs/NODE.md, Autoware output)."),
    NodeParameter("autoware_obstacle_label", "UNKNOWN", "Autoware label of barrier and traffic_cone on ~/objects: "
                  "UNKNOWN (every Autoware version; planned around as an obstacle) | HAZARD "
                  "(autoware_perception_msgs >= 1.7.0).", choices=("UNKNOWN", "HAZARD")),
    NodeParameter("marker_score_threshold", 0.3, "Only detections scoring at least this get markers [0, 1].",
                  live=True, low=0.0, high=1.0),
    NodeParameter("diagnostics_period_s", 1.0, "Period of /diagnostics, seconds.", low=0.05, high=60.0),
    NodeParameter("error_hold_s", 5.0, "A bad input keeps its diagnostics status non-OK for this long, seconds.",
                  live=True, low=0.0, high=3600.0),
)

PARAMETER_NAMES: tuple[str, ...] = tuple(p.name for p in NODE_PARAMETERS)

LIVE_PARAMETERS: frozenset[str] = frozenset(p.name for p in NODE_PARAMETERS if p.live)
"""Parameters that ``SetParameters`` may change while the node runs (applied to the next message).
All others shape subscriptions, publishers, the engine or the calibration, which are built once."""

PARAMS_FILE_DIFFERS: dict[str, str] = {
    "model": "no model is built in; the file names the bundled default model",
}
"""Parameters whose value in ``config/qdbev.yaml`` is not the built-in default, and why. Every
other parameter the file sets has its built-in default (checked by a unit test)."""


PARAMETERS_BY_NAME: dict[str, NodeParameter] = {p.name: p for p in NODE_PARAMETERS}


def launch_argument_description(name: str, empty: str = "params_file's value") -> str:
    """The description of the launch argument that overrides node parameter ``name``
    (``launch/*.launch.py``): the parameter's declared description, then what an empty value means.

    The launch files declare these arguments with an empty default and pass a non-empty one to the
    node after the params file, so the description is the parameter's own plus ``Empty: <empty>.``
    """
    return f"{PARAMETERS_BY_NAME[name].description} Empty: {empty}."


def defaults() -> dict[str, Any]:
    """``{name: built-in default}`` (lists copied)."""
    return {p.name: list(p.default) if isinstance(p.default, list) else p.default for p in NODE_PARAMETERS}


def _default_text(p: NodeParameter) -> str:
    if isinstance(p.default, bool):
        return "false" if not p.default else "true"
    if isinstance(p.default, list):
        return f'["", ...] ({len(p.default)})' if not any(p.default) else str(p.default)
    if isinstance(p.default, str):
        return f'"{p.default}"'
    return repr(p.default)


def markdown_table() -> str:
    """The parameter table of ``docs/NODE.md`` (name, default, run-time change, meaning)."""
    rows = ["| parameter | default | changeable at run time | meaning |", "|---|---|---|---|"]
    for p in NODE_PARAMETERS:
        live = "yes" if p.live else "no (read-only)"
        rows.append(f"| `{p.name}` | `{_default_text(p)}` | {live} | {p.description.replace(' | ', ' / ')} |")
    return "\n".join(rows) + "\n"
