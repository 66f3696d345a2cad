"""``qdbev_ros.stage_timing`` (per-stage times of a camera set) and ``qdbev_ros.set_mailbox``
(the worker's one-slot, newest-wins hand-over), without a node."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("diagnostic_msgs", reason="the timing status is a diagnostic_msgs message")

from qdbev_ros.set_mailbox import SetMailbox  # noqa: E402
from qdbev_ros.stage_timing import STAGES, SetTrace, StageTimes  # noqa: E402

DETAIL = {"decode": 12.0, "assemble": 1.0, "engine_preprocess": 3.0, "inference": 40.0, "postprocess": 2.0}


def test_stages_run_from_the_last_arrival_to_publish() -> None:
    times = StageTimes(window=3)
    trace = SetTrace(first_arrival=10.000, last_arrival=10.040, formed=10.041, picked=10.051, processed=10.110)
    stages = times.record(trace, DETAIL, published=10.112)
    assert list(stages) == list(STAGES)
    assert stages["sync"] == pytest.approx(1.0) and stages["queue"] == pytest.approx(10.0)
    assert stages["publish"] == pytest.approx(2.0) and stages["total"] == pytest.approx(72.0)
    assert stages["inference"] == 40.0


def test_window_percentiles_status_and_log_line() -> None:
    times = StageTimes(window=3)
    assert times.status().message == "no camera set published yet"
    for k in range(5):  # only the last 3 stay: inference 20, 30, 40
        t = float(k)
        times.record(SetTrace.at(t), {**DETAIL, "inference": 10.0 * k}, published=t + 0.1)
    assert times.recorded == 5 and times.percentiles(50)["inference"] == 30.0
    st = times.status()
    values = {kv.key: kv.value for kv in st.values}
    assert st.name == "qdbev_node: timing" and values["sets_in_window"] == "3"
    assert values["inference_ms_p50"] == "30.0" and values["total_ms_p50"] == "100.0"
    assert "p50 100.0 ms over the last 3 sets" in st.message
    line = times.log_line()
    assert "over the last 3 sets" in line and "inference 30.0" in line and line.index("sync") < line.index("total")


def test_mailbox_newest_wins_and_stop() -> None:
    box = SetMailbox()
    dropped = []
    assert box.put("a", on_replace=lambda: dropped.append(1)) is False
    assert box.put("b", on_replace=lambda: dropped.append(1)) is True
    assert dropped == [1] and not box.empty()
    assert box.take() == "b" and box.empty()
    got = []
    worker = threading.Thread(target=lambda: got.append(box.take()))
    worker.start()
    box.stop()
    worker.join(5.0)
    assert not worker.is_alive() and got == [None] and box.stopped
    box.put("c")
    assert box.take() is None  # stopped: nothing more is handed out
