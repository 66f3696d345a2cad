"""``qdbev_ros.diagnostics.DiagnosticsState`` with a fake clock: the levels of /diagnostics.

OK -> WARN -> ERROR -> (WARN) -> OK after ``error_hold_s``, per camera and for the pipeline
(issue 23); a warning does not mask an error of the same window; stale cameras, stalls and
``allow_missing_cameras``. The two-process counterpart is
``test/integration/test_node_sync_diagnostics.py::test_diagnostics_levels_through_the_node``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("diagnostic_msgs", reason="the diagnostics state builds diagnostic_msgs messages")

from qdbev_core.types import CAMERA_NAMES  # noqa: E402

OK, WARN, ERROR = b"\x00", b"\x01", b"\x02"
CAM = "CAM_BACK_LEFT"
HOLD = 2.0


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def state():
    from qdbev_ros.diagnostics import DiagnosticsState

    clock = _Clock()
    st = DiagnosticsState(CAMERA_NAMES, camera_timeout_s=1.0, error_hold_s=HOLD, clock=clock)
    return st, clock


def _levels(st, allow_missing: bool = False) -> dict[str, tuple[bytes, str]]:
    """``{"pipeline" | camera: (level, message)}`` of one built DiagnosticArray."""
    from std_msgs.msg import Header

    arr = st.build(Header(), allow_missing)
    out = {}
    for s in arr.status:
        key = "pipeline" if s.name == "qdbev_node: pipeline" else s.hardware_id
        out[key] = (s.level, s.message)
    assert set(out) == {"pipeline", *CAMERA_NAMES}
    return out


def _running(st, clock) -> None:
    for cam in CAMERA_NAMES:
        st.set_calibration(cam, "")
    st.start_running()
    _images(st, clock)


def _images(st, clock, skip=()) -> None:
    """Every camera (but ``skip``) delivers an image now; staleness re-evaluated."""
    for cam in CAMERA_NAMES:
        if cam not in skip:
            st.record_image(cam, clock.t)
    st.update_staleness()


def _at(st, clock, t: float, skip=()) -> dict[str, tuple[bytes, str]]:
    """Advance to ``t`` (images flowing) and build."""
    clock.t = t
    _images(st, clock, skip)
    return _levels(st)


def test_startup_levels(state) -> None:
    st, clock = state
    lv = _levels(st)
    assert lv["pipeline"][0] == ERROR and "waiting for calibration of" in lv["pipeline"][1]
    assert lv[CAM] == (ERROR, "waiting for calibration: waiting for CameraInfo")
    for cam in CAMERA_NAMES:
        st.set_calibration(cam, "")
    lv = _levels(st)
    assert lv["pipeline"] == (OK, "loading") and lv[CAM] == (OK, "calibrated; waiting for the engine")
    _running(st, clock)
    lv = _levels(st)
    assert lv["pipeline"] == (OK, "running") and all(lv[c] == (OK, "receiving") for c in CAMERA_NAMES)


def test_camera_ok_warn_error_ok_after_error_hold_s(state) -> None:
    st, clock = state
    _running(st, clock)
    t0 = clock.t
    assert _at(st, clock, t0)[CAM] == (OK, "receiving")
    # WARN: a duplicate stamp (the node works around it)
    clock.t = t0 + 0.5
    st.record_error(CAM, "duplicate_stamp", "two images with the same stamp")
    lv = _at(st, clock, t0 + 0.5)
    assert lv[CAM] == (WARN, "duplicate_stamp: two images with the same stamp")
    assert lv["pipeline"] == (WARN, f"running; camera problems: {CAM}")
    assert all(lv[c][0] == OK for c in CAMERA_NAMES if c != CAM)
    # ERROR: a bad image
    clock.t = t0 + 1.0
    st.record_error(CAM, "encoding", "unsupported image encoding 'mono16'")
    lv = _at(st, clock, t0 + 1.0)
    assert lv[CAM] == (ERROR, "encoding: unsupported image encoding 'mono16'")
    assert lv["pipeline"][0] == WARN  # one camera's bad image is not a pipeline error
    # a later warning does not mask the error of the same window
    clock.t = t0 + 1.5
    st.record_error(CAM, "out_of_order", "stamp went backwards by 0.300 s")
    assert _at(st, clock, t0 + 1.5)[CAM] == (ERROR, "encoding: unsupported image encoding 'mono16'")
    # the error holds for error_hold_s (inclusive), then the warning's hold is what is left ...
    assert _at(st, clock, t0 + 1.0 + HOLD)[CAM][0] == ERROR
    lv = _at(st, clock, t0 + 1.0 + HOLD + 0.01)
    assert lv[CAM] == (WARN, "out_of_order: stamp went backwards by 0.300 s")
    assert _at(st, clock, t0 + 1.5 + HOLD)[CAM][0] == WARN
    # ... and OK once error_hold_s passed since the last problem
    lv = _at(st, clock, t0 + 1.5 + HOLD + 0.01)
    assert lv[CAM] == (OK, "receiving") and lv["pipeline"] == (OK, "running")


def test_pipeline_ok_warn_error_ok_after_error_hold_s(state) -> None:
    from qdbev_ros.diagnostics import PIPELINE

    st, clock = state
    _running(st, clock)
    t0 = clock.t
    clock.t = t0 + 0.2
    st.record_error(PIPELINE, "time_backwards", "time jumped backwards by 3.000 s")
    lv = _at(st, clock, t0 + 0.2)
    assert lv["pipeline"] == (WARN, "time_backwards: time jumped backwards by 3.000 s")
    assert all(lv[c] == (OK, "receiving") for c in CAMERA_NAMES)  # pipeline problems are not the cameras'
    clock.t = t0 + 0.4
    st.record_error(PIPELINE, "engine", "engine failed on the frame at 1.300 s")
    assert _at(st, clock, t0 + 0.4)["pipeline"] == (ERROR, "engine: engine failed on the frame at 1.300 s")
    clock.t = t0 + 0.6
    st.record_error(PIPELINE, "time_gap", "time jumped forward by 30.000 s")
    assert _at(st, clock, t0 + 0.6)["pipeline"][0] == ERROR  # not masked by the later warning
    assert _at(st, clock, t0 + 0.4 + HOLD)["pipeline"][0] == ERROR
    assert _at(st, clock, t0 + 0.4 + HOLD + 0.01)["pipeline"] == (WARN, "time_gap: time jumped forward by 30.000 s")
    assert _at(st, clock, t0 + 0.6 + HOLD + 0.01)["pipeline"] == (OK, "running")
    # error_hold_s changed at run time (the node sets the attribute): the next build uses it
    clock.t = t0 + 10.0
    st.record_error(PIPELINE, "engine", "again")
    st.error_hold_s = 0.5
    assert _at(st, clock, t0 + 10.5)["pipeline"][0] == ERROR
    assert _at(st, clock, t0 + 10.51)["pipeline"] == (OK, "running")


def test_stale_camera_error_and_allow_missing_cameras(state) -> None:
    st, clock = state
    _running(st, clock)
    t0 = clock.t
    lv = _at(st, clock, t0 + 1.0, skip={CAM})  # exactly camera_timeout_s: not stale yet
    assert lv[CAM] == (OK, "receiving") and st.stale_cameras() == []
    clock.t = t0 + 1.1
    _images(st, clock, skip={CAM})
    assert st.stale_cameras() == [CAM]
    st.record_error(CAM, "timeout", "no image for 1.1 s")  # as the node's watchdog does
    lv = _levels(st)
    assert lv[CAM][0] == ERROR and lv[CAM][1].startswith("no image for 1.1 s")
    assert lv["pipeline"] == (ERROR, f"no detections: camera(s) {CAM} stopped")
    lv = _levels(st, allow_missing=True)  # degraded output: the pipeline only warns
    assert lv["pipeline"] == (WARN, f"running; camera problems: {CAM}")
    # the camera comes back: ERROR (the timeout) for error_hold_s more, then OK
    lv = _at(st, clock, t0 + 1.5)
    assert st.stale_cameras() == [] and lv[CAM] == (ERROR, "timeout: no image for 1.1 s")
    assert lv["pipeline"][0] == WARN
    lv = _at(st, clock, t0 + 1.1 + HOLD + 0.01)
    assert lv[CAM] == (OK, "receiving") and lv["pipeline"] == (OK, "running")
    # every camera stale: ERROR even with allow_missing_cameras
    clock.t = t0 + 10.0
    st.update_staleness()
    assert set(st.stale_cameras()) == set(CAMERA_NAMES)
    assert _levels(st, allow_missing=True)["pipeline"][0] == ERROR


def test_stall_is_error_for_as_long_as_it_lasts(state) -> None:
    st, clock = state
    _running(st, clock)
    t0 = clock.t
    st.set_stall("CAM_BACK's stamps are +3.011 s off the other cameras'", "CAM_BACK",
                 "stamps 3.011 s ahead of the other cameras'")
    for dt in (0.0, HOLD, 10 * HOLD):  # not limited by error_hold_s
        lv = _at(st, clock, t0 + dt)
        assert lv["pipeline"] == (ERROR, "CAM_BACK's stamps are +3.011 s off the other cameras'")
        assert lv["CAM_BACK"] == (ERROR, "stamps 3.011 s ahead of the other cameras'")
        assert lv[CAM] == (OK, "receiving")
    st.set_stall("")
    lv = _levels(st)
    assert lv["pipeline"] == (OK, "running") and lv["CAM_BACK"] == (OK, "receiving")
