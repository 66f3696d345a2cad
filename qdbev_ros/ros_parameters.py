"""The node's ROS parameters: declared from ``qdbev_core.runtime.node_parameters``, checked at
startup, coerced (an integer literal for a float parameter is that float) and changed at run time.

``ParameterHandling`` is a mixin of ``QdbevNode`` (an ``rclpy.node.Node``). It sets ``p`` (the
values by name), ``image_topics`` and ``camera_info_topics``; ``_apply_live`` reconfigures the
node's ``sync``, ``engine`` and ``diag`` when a live parameter changes (docs/NODE.md, Parameters).
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter

from qdbev_core.runtime.node_parameters import LIVE_PARAMETERS, NODE_PARAMETERS, PARAMETER_NAMES, NodeParameter
from qdbev_core.types import CAMERA_NAMES

from .startup_error import NodeStartupError

__all__ = ["ParameterHandling", "parameter_descriptor"]


def parameter_descriptor(spec: NodeParameter, text: str) -> ParameterDescriptor:
    """The rclpy descriptor of a ``NodeParameter``: description, read-only flag and range."""
    extra: dict[str, Any] = {}
    if spec.low is not None and spec.type_name == "double":
        extra["floating_point_range"] = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                            step=0.0)]
    elif spec.low is not None and spec.type_name == "integer":
        extra["integer_range"] = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    return ParameterDescriptor(description=text, read_only=not spec.live, **extra)


class ParameterHandling:
    """Declare, check, coerce and apply the node's parameters (mixin of ``QdbevNode``)."""

    def _declare_parameters(self) -> dict[str, Any]:
        """Declare ``NODE_PARAMETERS`` (descriptions, ranges, read-only unless live) and check them."""
        p: dict[str, Any] = {}
        for spec in NODE_PARAMETERS:
            text = spec.description + (" Changeable at run time." if spec.live else
                                       " Read-only at run time: set it at startup (params file / -p) and restart "
                                       "to change it.")
            self._coerce_override(spec.name, spec.default)
            try:
                p[spec.name] = self.declare_parameter(spec.name, spec.default, parameter_descriptor(spec, text)).value
            except Exception as exc:  # noqa: BLE001 - rclpy raises several parameter exception types
                raise NodeStartupError(f"parameter {spec.name!r}: {exc}") from exc
        for spec in NODE_PARAMETERS:
            problem = spec.problem(p[spec.name])
            if problem:
                raise NodeStartupError(problem)
        if not p["model"]:
            raise NodeStartupError("parameter 'model' is empty: set it to a name in models/manifest.yaml or a "
                                   ".safetensors path (e.g. --ros-args -p model:=models/nano-fp32-yaw.safetensors)")
        for name in ("image_topics", "camera_info_topics"):
            if len(p[name]) != len(CAMERA_NAMES):
                raise NodeStartupError(f"parameter {name!r} has {len(p[name])} entries; give six (order "
                                       f"{', '.join(CAMERA_NAMES)}), empty strings for the defaults")
        ns = p["camera_namespace"].rstrip("/")
        suffix = "image_raw" if p["image_transport"] == "raw" else "image_raw/compressed"
        self.image_topics = [t or f"{ns}/{c}/{suffix}" for t, c in zip(p["image_topics"], CAMERA_NAMES)]
        self.camera_info_topics = [t or f"{ns}/{c}/camera_info" for t, c in zip(p["camera_info_topics"], CAMERA_NAMES)]
        self._validate_topics(p)
        return p

    def _validate_topics(self, p: dict[str, Any]) -> None:
        """Every topic the node will subscribe to is a valid ROS name and no camera shares one;
        otherwise a ``NodeStartupError`` naming the parameter (not a traceback after calibration)."""
        from rclpy.exceptions import InvalidTopicNameException
        from rclpy.validate_topic_name import validate_topic_name

        lists = {"image_topics": self.image_topics, "camera_info_topics": self.camera_info_topics}
        if p["ego_pose_source"] == "odometry":
            lists["odometry_topic"] = [p["odometry_topic"]]
        for name, topics in lists.items():
            for topic in topics:
                try:
                    validate_topic_name(topic)
                except InvalidTopicNameException as exc:
                    raise NodeStartupError(f"parameter {name!r}: {topic!r} is not a valid topic name: "
                                           f"{str(exc).splitlines()[0]}") from None
            dup = sorted({t for t in topics if topics.count(t) > 1})
            if dup:
                raise NodeStartupError(f"parameter {name!r}: {dup[0]!r} is given for more than one camera")

    def _coerce_override(self, name: str, default: Any) -> None:
        """An integer override of a float parameter (``-p score_threshold:=1``) becomes that float.

        rclpy would refuse it as a type mismatch, which stops the node; ``1`` for a threshold is
        clearly ``1.0``. (The overrides dict is rclpy's own; there is no public setter.)
        """
        overrides = getattr(self, "_parameter_overrides", None)
        given = None if overrides is None else overrides.get(name)
        if isinstance(default, float) and given is not None and given.type_ == Parameter.Type.INTEGER:
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(given.value))

    def _coerce_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Pre-set callback: integers for float parameters become floats (as at startup)."""
        out = []
        for prm in params:
            if prm.type_ == Parameter.Type.INTEGER and self._declared_type(prm.name) == Parameter.Type.DOUBLE:
                prm = Parameter(prm.name, Parameter.Type.DOUBLE, float(prm.value))
            out.append(prm)
        return out

    def _declared_type(self, name: str) -> Parameter.Type | None:
        try:
            return Parameter.Type(self.describe_parameter(name).type)
        except Exception:  # noqa: BLE001 - not declared
            return None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Apply run-time changes of ``LIVE_PARAMETERS``; refuse anything else with the reason.

        (rclpy refuses read-only parameters before this callback; the check here covers
        parameters declared without the flag by a subclass.)
        """
        for prm in params:
            if prm.name not in LIVE_PARAMETERS and prm.name in PARAMETER_NAMES:
                return SetParametersResult(successful=False, reason=(
                    f"{prm.name} cannot change while the node runs (it is used once at startup); "
                    f"restart the node with -p {prm.name}:=<value> or the params file"))
        new = dict(self.p)
        new.update({prm.name: prm.value for prm in params if prm.name in PARAMETER_NAMES})
        try:
            self._apply_live(new)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        changed = ", ".join(f"{prm.name}={prm.value!r}" for prm in params)
        self.get_logger().info(f"parameters changed at run time: {changed}")
        return SetParametersResult(successful=True)

    def _apply_live(self, new: dict[str, Any]) -> None:
        """Make the live parameters of ``new`` effective (ValueError, nothing changed, if not possible)."""
        sync = getattr(self, "sync", None)
        if (new["slop"], new["queue_size"]) != (self.p["slop"], self.p["queue_size"]):
            if not hasattr(sync, "configure"):
                raise ValueError(f"slop / queue_size cannot change on {type(sync).__name__}; restart the node")
            sync.configure(new["queue_size"], new["slop"])
        engine = getattr(self, "engine", None)
        if engine is not None and hasattr(engine, "score_threshold"):
            engine.score_threshold = float(new["score_threshold"])  # lower thresholds need the engine's
        if engine is not None and hasattr(engine, "topk"):
            engine.topk = int(new["max_detections"])
        self.diag.camera_timeout_s = float(new["camera_timeout_s"])
        self.diag.error_hold_s = float(new["error_hold_s"])
        self.p = new
