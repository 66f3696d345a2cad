"""Every startup check of ``qdbev_node``'s parameters, in one parametrized test (issue 23).

Each case starts ``QdbevNode`` in this process (an injected engine, an rclpy context of the
case's own, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` from conftest; nothing is spun) with the
bad value given as the user gives it, ``--ros-args -p name:=value``, and expects the
``NodeStartupError`` that ``main()`` prints as the one FATAL line (exit 1, see
``test/integration/test_node_faults.py::test_model_missing_is_fatal``), naming the parameter.
A missing / corrupt model file is tested there, through the process.
"""

from __future__ import annotations

import os

import pytest
from ros_domain import test_domain_id

pytest.importorskip("rclpy", reason="the node needs rclpy")

from qdbev_core.types import Detections  # noqa: E402

RANGE = r"parameter '{name}': Invalid parameter value .* Parameter {name} out of range"
TYPE = r"parameter '{name}': Trying to set parameter '{name}' to .* expecting type"
LENGTH = r"parameter '{name}' has {n} entries; give six \(order CAM_FRONT, CAM_FRONT_RIGHT"

# id: (arguments after --ros-args, error pattern)
CASES: dict[str, tuple[list[str], str]] = {
    # choices
    "image_transport": (["image_transport:=h264"],
                        r"parameter 'image_transport' is 'h264'; use one of raw, compressed$"),
    "device": (["device:=gpu"], r"parameter 'device' is 'gpu'; use cpu, cuda or cuda:<index>$"),
    "device-cuda-index": (["device:=cuda:x"], r"parameter 'device' is 'cuda:x'"),
    "calibration_source": (["calibration_source:=yaml"],
                           r"parameter 'calibration_source' is 'yaml'; use one of tf, file$"),
    "ego_pose_source": (["ego_pose_source:=gps"],
                        r"parameter 'ego_pose_source' is 'gps'; use one of tf, odometry, none$"),
    # empty model
    "model-empty": (["model:=''"], r"parameter 'model' is empty: set it to a name in models/manifest.yaml"),
    # topic lists that are not six long
    "image_topics-5": (["image_topics:=['', '', '', '', '']"], LENGTH.format(name="image_topics", n=5)),
    "image_topics-7": (["image_topics:=['', '', '', '', '', '', '/x']"], LENGTH.format(name="image_topics", n=7)),
    "camera_info_topics-1": (["camera_info_topics:=['/cam/info']"], LENGTH.format(name="camera_info_topics", n=1)),
    # out-of-range values (the declared ranges)
    "score_threshold-high": (["score_threshold:=1.5"], RANGE.format(name="score_threshold")),
    "score_threshold-negative": (["score_threshold:=-0.1"], RANGE.format(name="score_threshold")),
    "score_threshold-int-literal": (["score_threshold:=2"], RANGE.format(name="score_threshold")),
    "max_detections-0": (["max_detections:=0"], RANGE.format(name="max_detections")),
    "max_detections-huge": (["max_detections:=10001"], RANGE.format(name="max_detections")),
    "image_qos_depth-0": (["image_qos_depth:=0"], RANGE.format(name="image_qos_depth")),
    "slop-0": (["slop:=0"], RANGE.format(name="slop")),
    "slop-high": (["slop:=1.5"], RANGE.format(name="slop")),
    "queue_size-0": (["queue_size:=0"], RANGE.format(name="queue_size")),
    "queue_size-high": (["queue_size:=101"], RANGE.format(name="queue_size")),
    "ego_pose_tolerance_s-negative": (["ego_pose_tolerance_s:=-1.0"], RANGE.format(name="ego_pose_tolerance_s")),
    "camera_timeout_s-0": (["camera_timeout_s:=0.0"], RANGE.format(name="camera_timeout_s")),
    "marker_score_threshold-high": (["marker_score_threshold:=1.1"], RANGE.format(name="marker_score_threshold")),
    "diagnostics_period_s-0": (["diagnostics_period_s:=0.0"], RANGE.format(name="diagnostics_period_s")),
    "error_hold_s-negative": (["error_hold_s:=-1.0"], RANGE.format(name="error_hold_s")),
    # wrong types
    "score_threshold-string": (["score_threshold:=high"], TYPE.format(name="score_threshold")),
    "allow_missing_cameras-string": (["allow_missing_cameras:=maybe"], TYPE.format(name="allow_missing_cameras")),
    "image_topics-string": (["image_topics:=/cameras/front"], TYPE.format(name="image_topics")),
    "queue_size-float": (["queue_size:=2.5"], TYPE.format(name="queue_size")),
    # files
    "calibration_file-missing": (["calibration_file:=/nonexistent/calib.yaml"],
                                 r"calibration file /nonexistent/calib.yaml: "),
    # backend (checked by load_engine before the model is read)
    "backend": (["backend:=tensorflow", "model:=nano-w4a6-qdbev"],
                r"cannot load model 'nano-w4a6-qdbev' \(backend tensorflow, device cpu\): "
                r"unknown backend 'tensorflow'"),
}

# topic names: before the node validated them, an invalid or empty one escaped as rclpy's
# InvalidTopicNameException (a traceback, not the FATAL line) or, for image_topics, failed only after
# calibration, in every startup-timer tick; a duplicate was accepted silently
TOPICS = {
    "image_topics-invalid-name": (["image_topics:=['bad topic', '', '', '', '', '']"],
                                  r"parameter 'image_topics'.*'bad topic'"),
    "camera_info_topics-invalid-name": (["camera_info_topics:=['bad topic', '', '', '', '', '']"],
                                        r"parameter 'camera_info_topics'.*'bad topic'"),
    "odometry_topic-empty": (["odometry_topic:=''", "ego_pose_source:=odometry"], r"parameter 'odometry_topic'"),
    "image_topics-duplicate": (["image_topics:=['/a', '/a', '', '', '', '']"], r"parameter 'image_topics'.*'/a'"),
}
CASES.update(TOPICS)
PARAMS = list(CASES)


class _Engine:
    name = "fake"

    def reset(self) -> None:
        pass

    def detect(self, frame) -> Detections:
        return Detections()


@pytest.mark.parametrize("case", PARAMS)
def test_bad_parameter_is_a_startup_error_naming_it(case: str) -> None:
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from qdbev_ros.node import NodeStartupError, QdbevNode

    given, pattern = CASES[case]
    names = {a.split(":=", 1)[0] for a in given}
    args = ["qdbev_node", "--ros-args"]
    for a in given:
        args += ["-p", a]
    # what the case does not set: a working configuration (an explicit override beats -p, so
    # only parameters the case leaves alone are overridden)
    base = {"model": "injected", "calibration_source": "file", "ego_pose_source": "none"}
    overrides = [Parameter(k, value=v) for k, v in base.items() if k not in names]
    engine = None if case == "backend" else _Engine()
    ctx = Context()
    rclpy.init(context=ctx, args=args, domain_id=test_domain_id(41))
    try:
        with pytest.raises(NodeStartupError) as info:
            node = QdbevNode(engine=engine, context=ctx, parameter_overrides=overrides)
            node.destroy_node()  # reached only when the check is missing
        assert info.match(pattern), str(info.value)
    finally:
        ctx.try_shutdown()


def test_the_same_configuration_without_the_bad_value_starts() -> None:
    """Control: the base configuration of the cases above starts (so each case fails for its value)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from qdbev_ros.node import QdbevNode

    ctx = Context()
    rclpy.init(context=ctx, args=["qdbev_node", "--ros-args", "-p", "image_topics:=['', '', '', '', '', '/x']",
                                  "-p", "score_threshold:=1", "-p", "device:=cuda:1"],
               domain_id=test_domain_id(41))
    try:
        node = QdbevNode(engine=_Engine(), context=ctx, parameter_overrides=[
            Parameter("model", value="injected"), Parameter("calibration_source", value="file"),
            Parameter("ego_pose_source", value="none")])
        assert node.image_topics[-1] == "/x" and node.p["score_threshold"] == 1.0
        node.destroy_node()
    finally:
        ctx.try_shutdown()
