"""Issue 18, in-process: parameters (defects 3, 8), calibration YAML (5), Ctrl-C race (4), logging (6).

The node is built in this process with an injected engine and an rclpy context of the test's own
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` from conftest, a domain of its own); nothing is
spun. The two-process counterparts are in ``test/integration/test_node_runtime.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ros_domain import test_domain_id

pytest.importorskip("rclpy", reason="the node needs rclpy")

from qdbev_core.runtime.calibration import load_extrinsics_yaml  # noqa: E402
from qdbev_core.types import CAMERA_NAMES, Detections  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class _Engine:
    """Two detections (scores 0.9 and 0.3) per frame; counts resets."""

    name = "fake"
    score_threshold = 0.05
    topk = 300

    def __init__(self) -> None:
        from qdbev_core.engine import EngineTiming

        self.resets = 0
        self.last_timing = EngineTiming(1.0, 2.0, 3.0)

    def reset(self) -> None:
        self.resets += 1

    def detect(self, frame) -> Detections:
        boxes = np.array([[10.0, 0, 0, 4, 2, 1.5, 0.1, 1.0, 0.0], [5.0, 1, 0, 1, 1, 1.7, 0.0, 0.0, 0.0]])
        return Detections(boxes=boxes, scores=np.array([0.9, 0.3]), labels=np.array([0, 8]))


@pytest.fixture
def make_node():
    """Factory ``make_node(args=(), **params) -> QdbevNode`` (calibration from the YAML file)."""
    import os

    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from qdbev_ros.node import QdbevNode

    contexts, nodes = [], []

    def make(args: tuple[str, ...] = (), **params):
        ctx = Context()
        rclpy.init(context=ctx, args=["qdbev_node", "--ros-args", *args] if args else None,
                   domain_id=test_domain_id(40))
        contexts.append(ctx)
        overrides = [Parameter("model", value="injected"), Parameter("calibration_source", value="file"),
                     Parameter("ego_pose_source", value="none")]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        node = QdbevNode(engine=_Engine(), context=ctx, parameter_overrides=overrides)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()
    for ctx in contexts:
        ctx.try_shutdown()


def _calibrate(node) -> None:
    from qdbev_core.data.rig import rig_arrays
    from qdbev_ros.conversions import make_header
    from qdbev_ros.ros_io import make_camera_info

    ks, _ = rig_arrays(0.05)
    for i, n in enumerate(CAMERA_NAMES):
        node._on_camera_info(make_camera_info(ks[i], 80, 45, make_header(0.0, n)), i)
    node._check_startup()
    assert node._rig is not None


def _msgs(stamp: float):
    from qdbev_ros.conversions import make_header
    from qdbev_ros.ros_io import rgb_to_image_msg

    img = np.zeros((45, 80, 3), dtype=np.uint8)
    return [rgb_to_image_msg(img, make_header(stamp + 0.001 * i, n)) for i, n in enumerate(CAMERA_NAMES)]


# ---- defect 8: integer literal for a float parameter; device -----------------------------------------


def test_integer_literal_for_float_parameter_is_taken_as_float(make_node) -> None:
    node = make_node(args=("-p", "score_threshold:=1", "-p", "slop:=1"))  # as `ros2 run ... -p` gives it
    assert node.p["score_threshold"] == 1.0 and isinstance(node.p["score_threshold"], float)
    assert node.get_parameter("slop").value == 1.0
    node2 = make_node(marker_score_threshold=0)  # parameter_overrides path
    assert node2.p["marker_score_threshold"] == 0.0


@pytest.mark.parametrize("device", ["tpu", "cuda0", "CPU", ""])
def test_unknown_device_is_refused(make_node, device: str) -> None:
    from qdbev_ros.node import NodeStartupError

    with pytest.raises(NodeStartupError, match="parameter 'device' is .*cpu, cuda or cuda:<index>"):
        make_node(device=device)


def test_cuda_devices_are_accepted(make_node) -> None:
    assert make_node(device="cuda:1").p["device"] == "cuda:1"


# ---- defect 3: run-time parameters ---------------------------------------------------------------------


def test_live_parameters_apply_and_the_rest_are_refused(make_node) -> None:
    from rclpy.parameter import Parameter

    from qdbev_core.runtime.node_parameters import NODE_PARAMETERS
    from qdbev_ros.node import LIVE_PARAMETERS, PARAMETER_NAMES

    node = make_node()
    _calibrate(node)
    assert len(node.process_set(_msgs(1.0))) == 2
    (res,) = node.set_parameters([Parameter("score_threshold", value=0.5)])
    assert res.successful, res.reason
    det = node.process_set(_msgs(1.1))
    assert det.scores.tolist() == [0.9] and node.engine.score_threshold == 0.5
    (res,) = node.set_parameters([Parameter("score_threshold", value=0)])  # integer: taken as 0.0
    assert res.successful and node.p["score_threshold"] == 0.0
    (res,) = node.set_parameters([Parameter("max_detections", value=1)])
    assert res.successful and len(node.process_set(_msgs(1.2))) == 1 and node.engine.topk == 1
    res = node.set_parameters_atomically([Parameter("slop", value=0.03), Parameter("queue_size", value=4)])
    assert res.successful and node.sync.slop_ns == 30_000_000 and node.sync.queue_size == 4
    (res,) = node.set_parameters([Parameter("camera_timeout_s", value=2.5)])
    assert res.successful and node.diag.camera_timeout_s == 2.5
    for name in ("image_transport", "model", "frame_id", "publish_markers"):
        value = node.get_parameter(name).value
        new = (not value) if isinstance(value, bool) else value + "_x"
        (res,) = node.set_parameters([Parameter(name, value=new)])
        assert not res.successful and name in res.reason, (name, res.reason)
        assert node.get_parameter(name).value == value and node.p[name] == value
    for spec in NODE_PARAMETERS:  # declared from the one list: description, read-only flag, range
        name = spec.name
        desc = node.describe_parameter(name)
        assert desc.read_only == (name not in LIVE_PARAMETERS), name
        assert ("Changeable at run time" in desc.description) == (name in LIVE_PARAMETERS), name
        assert desc.description.startswith(spec.description), name
        ranges = [(r.from_value, r.to_value) for r in (*desc.floating_point_range, *desc.integer_range)]
        assert ranges == ([] if spec.low is None else [(spec.low, spec.high)]), name
    assert set(PARAMETER_NAMES) == {p.name for p in NODE_PARAMETERS} == set(node.p)


# ---- defect 5: calibration YAML ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,what", [("- CAM_FRONT\n- CAM_BACK\n", "a list"), ("42\n", "an int"),
                                       ("just words\n", "a str"), ("", "empty")])
def test_calibration_yaml_top_level_not_a_mapping(tmp_path: Path, text: str, what: str) -> None:
    f = tmp_path / "calib.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match="expected a mapping with 'frame_id:' and 'cameras:'") as ei:
        load_extrinsics_yaml(f)
    assert str(f) in str(ei.value) and what.split()[-1] in str(ei.value)


def test_calibration_yaml_for_another_frame_is_refused_by_the_node(make_node, tmp_path: Path) -> None:
    from qdbev_ros.node import NodeStartupError

    data = (REPO / "config" / "calibration_nuscenes.yaml").read_text()
    assert "frame_id: base_link" in data
    f = tmp_path / "calib_odom.yaml"
    f.write_text(data.replace("frame_id: base_link", "frame_id: base_footprint", 1))
    with pytest.raises(NodeStartupError, match="'base_footprint', but the node's frame_id is 'base_link'"):
        make_node(calibration_file=str(f))
    f.write_text("- 1\n- 2\n")
    with pytest.raises(NodeStartupError, match="expected a mapping"):
        make_node(calibration_file=str(f))
    ok = tmp_path / "calib_ok.yaml"
    ok.write_text(data)
    assert set(make_node(calibration_file=str(ok))._calib.extrinsics) == set(CAMERA_NAMES)


# ---- defect 4: Ctrl-C between the executor's ok() check and its wait set ----------------------------------


def test_rclerror_after_shutdown_ends_the_spin_quietly(make_node) -> None:
    from qdbev_ros.node import RCLError, spin_until_shutdown

    node = make_node()

    class _RacingExecutor:
        """What rclpy does when SIGINT lands between ``context.ok()`` and the wait-set creation."""

        def spin(self) -> None:
            node.context.shutdown()
            raise RCLError("failed to initialize wait set: the given context is not valid")

    spin_until_shutdown(_RacingExecutor(), node.context)  # no exception: shutdown, exit 0

    class _BrokenExecutor:
        def spin(self) -> None:
            raise RCLError("something else")

    live = make_node()
    with pytest.raises(RCLError, match="something else"):
        spin_until_shutdown(_BrokenExecutor(), live.context)


# ---- defect 6: rate-limited logging that reports new instances; forward gaps ------------------------------


def test_log_limiter_reports_new_episodes_and_summarizes_bursts() -> None:
    from qdbev_ros.log_limit import LogLimiter

    now = [0.0]
    lim = LogLimiter(quiet_s=2.0, repeat_s=10.0, clock=lambda: now[0])
    assert lim.check("k").log
    now[0] = 0.1
    assert not lim.check("k").log  # same burst
    assert lim.check("other").log  # other keys are independent
    for _ in range(50):  # a 12 Hz fault: one line per repeat_s with the count
        now[0] += 0.083
        lim.check("k")
    now[0] += 6.0  # quiet for longer than quiet_s: a new episode
    d = lim.check("k")
    assert d.log and d.new_episode
    burst = []
    for _ in range(130):
        now[0] += 0.083
        burst.append(lim.check("k"))
    logged = [d for d in burst if d.log]
    assert len(logged) == 1 and not logged[0].new_episode and logged[0].suppressed > 100
    lim.forget("k")
    assert lim.check("k").log
    # magnitudes: a much larger instance within a burst is logged (a 30 s gap among 2 s ones)
    assert lim.check("gap", 2.0).log
    now[0] += 0.5
    assert not lim.check("gap", 2.5).log and not lim.check("gap", 1.0).log
    now[0] += 0.5
    d = lim.check("gap", 30.0)
    assert d.log and d.suppressed == 2
    assert not lim.check("gap", 31.0).log


def test_second_time_jump_is_logged_and_forward_gap_reported(make_node, capfd) -> None:
    node = make_node()
    _calibrate(node)
    now = [100.0]
    node._limiter.clock = lambda: now[0]
    assert node.process_set(_msgs(50.0)) is not None
    assert node.process_set(_msgs(49.9)) is not None  # 0.1 s back
    now[0] += 5.0
    assert node.process_set(_msgs(46.9)) is not None  # 3 s back, later: a new instance
    now[0] += 5.0
    assert node.process_set(_msgs(50.0)) is not None  # 3.1 s forward: beyond the temporal fusion's gap
    err = capfd.readouterr().err
    assert err.count("[time_backwards] time jumped backwards by 0.100 s") == 1, err
    assert err.count("[time_backwards] time jumped backwards by 3.000 s") == 1, err
    assert err.count("[time_gap] time jumped forward by 3.100 s") == 1, err
    from std_msgs.msg import Header

    values = {kv.key: kv.value for kv in node.diag.build(Header()).status[0].values}
    assert values["time_gaps_forward"] == "1" and values["temporal_resets"] == "3"
    assert node.engine.resets == 3


