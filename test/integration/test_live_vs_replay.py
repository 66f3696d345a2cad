"""The live node on a bag scores what offline ``qdbev replay`` scores (NDS within 0.01).

Three processes over real rclpy (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a ROS domain of
this test's own, qdbev's Fast DDS profile): ``qdbev_node`` (the manifest's default model, compressed
images), ``qdbev play --wait-for-subscribers --pace-topic /qdbev_node/detections`` and this
process, which records the node's detections + velocities with ``qdbev_ros.record.BagRecorder``.

No set may be dropped for the two to agree (the model is temporal: a dropped set changes the
next ones too). The player paces itself by the node's output: camera set k+1 is published only
after the detections of set k arrived (stamp-matched), so the node's newest-wins mailbox never
replaces a set, however slow inference is on a busy machine. Then the same bag goes through
``replay_bag`` with the same model and parameters, and both are scored with the official
nuScenes devkit (``score_replay``) on the bag's scene (6 key frames of the ``synth_dataroot``
fixture).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qdbev_core.bag.from_nuscenes import bag_from_nuscenes
from qdbev_core.bag.layout import DETECTIONS_TOPIC, VELOCITY_TOPIC, NodeParams, read_bag_source
from qdbev_core.models_manifest import default_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_node_e2e import PARAMS_FILE, REPO, NodeProcess, ros_env, test_domain_id  # noqa: E402

pytestmark = pytest.mark.realtime  # real-time ROS timing: run alone, not beside other tests

pytest.importorskip("rclpy")
VERSION = "v1.0-mini"
MODEL = default_model()  # what users run: the manifest default through config/qdbev.yaml's backend
CONFIDENT = 0.3


def _recorder_node(domain: int):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("qdbev_test_recorder", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=min(0.02, max(0.0, end - time.monotonic())))

    return context, node, executor, spin


@pytest.mark.timeout(900)
def test_live_node_nds_equals_offline_replay(synth_dataroot: Path, tmp_path: Path) -> None:
    from qdbev_core.bag.recorded import read_detections_bag
    from qdbev_core.bag.replay import replay_bag, score_replay
    from qdbev_core.data.reader import NuScenesReader
    from qdbev_core.engine import load_engine
    from qdbev_ros.record import BagRecorder

    reader = NuScenesReader(synth_dataroot, VERSION, split="synth_val", load_images=False)
    bag = tmp_path / "scene_bag"
    bag_from_nuscenes(synth_dataroot, VERSION, reader.scenes()[0].name, bag, nusc=reader.nusc)
    source = read_bag_source(bag)
    keys = [k.stamp_ns for k in source.key_frames]

    # ---- the offline engine first: config/qdbev.yaml's backend is auto, which times the model's paths
    # here, outside the node's startup wait, into the session's cache (conftest.py); the node started
    # next reads that choice (same key: 2 threads on both sides) and runs the same path
    params = NodeParams.from_file(PARAMS_FILE, model=MODEL)
    engine = load_engine(MODEL, backend=params.backend, device=params.device, threads=2,  # the node's OMP_NUM_THREADS
                         score_threshold=params.score_threshold, topk=params.max_detections)
    choice = getattr(engine, "auto_choice", None)

    # ---- live: node + paced player + recorder --------------------------------------------------
    domain = test_domain_id(31)
    node = NodeProcess({"model": MODEL, "image_transport": "compressed"}, domain, backend=None)  # the file's: auto
    context, rec_node, executor, spin = _recorder_node(domain)
    recorded = tmp_path / "live_bag"
    player = None
    try:
        rec = BagRecorder(rec_node, recorded, [DETECTIONS_TOPIC, VELOCITY_TOPIC])
        try:
            rec.resolve_types(300, spin)  # the node creates its publishers once the model is loaded
        except TimeoutError as exc:
            pytest.fail(f"{exc}; node log:\n{node.log}")
        rec.start()
        end = time.monotonic() + 60
        while not rec.matched():
            assert time.monotonic() < end, f"recorder not matched with the node:\n{node.log}"
            spin(0.05)
        cmd = [sys.executable, "-m", "qdbev_ros", "play", str(bag), "--wait-for-subscribers", "300",
               "--pace-topic", DETECTIONS_TOPIC, "--pace-timeout", "120"]
        player = subprocess.Popen(cmd, env=ros_env(domain), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        end = time.monotonic() + 600
        while player.poll() is None:
            assert node.proc.poll() is None, f"node exited:\n{node.log}"
            assert time.monotonic() < end, f"player still running after 600 s:\n{node.log}"
            spin(0.1)
        spin(0.5)  # the player saw the last output; let it reach this subscriber too
        play_log = player.stdout.read() if player.stdout else ""
        rec.close()
    finally:
        if player is not None and player.poll() is None:
            player.kill()
            player.wait(timeout=10)
        code = node.stop()
        executor.shutdown()
        rec_node.destroy_node()
        context.try_shutdown()
    assert player.returncode == 0, play_log
    assert code == 0, node.log
    assert "paced 6 camera sets" in play_log and "0 timeouts" in play_log, play_log

    live = read_detections_bag(recorded)
    assert [t for t, _ in live.pairs] == keys, (play_log, node.log)  # every set, once, in order: nothing dropped
    assert not live.without_velocity and not live.unmatched_velocity
    live_det = live.by_stamp()
    assert any(np.abs(d.boxes[:, 7:9]).max(initial=0.0) > 0 for d in live_det.values())  # velocities came through

    # ---- offline: the same bag, model and parameters ---------------------------------------------
    if choice is not None:  # backend auto: the node read the choice timed above, so both ran the same path
        assert f"auto backend: using {choice.path.name} " in node.log and "cached timing" in node.log, node.log
    offline = replay_bag(bag, engine, params)
    assert list(offline.detections) == keys
    for t in keys:  # same frames in, same detections out (up to float noise of another process)
        a, b = live_det[t], offline.detections[t]
        assert abs(len(a) - len(b)) <= 2, (t, len(a), len(b))
        for x, y in ((a, b), (b, a)):  # every confident box has its twin: same class, place, size, score
            for i in np.flatnonzero(x.scores >= CONFIDENT):
                same = np.flatnonzero(y.labels == x.labels[i])
                assert len(same), (t, x.names()[i])
                d = np.linalg.norm(y.boxes[same, :6] - x.boxes[i, :6], axis=1)
                j = same[int(np.argmin(d))]
                assert d.min() < 0.05 and abs(y.scores[j] - x.scores[i]) < 0.01, (t, x.names()[i], d.min())

    live_m, live_note = score_replay(live_det, source, tmp_path / "eval_live")
    off_m, off_note = score_replay(offline.detections, source, tmp_path / "eval_replay")
    assert live_m is not None and off_m is not None, (live_note, off_note)
    print(f"NDS live {live_m['nd_score']:.4f} offline {off_m['nd_score']:.4f}; mAVE live "
          f"{live_m['tp_errors']['vel_err']:.4f} offline {off_m['tp_errors']['vel_err']:.4f}")
    assert abs(live_m["nd_score"] - off_m["nd_score"]) <= 0.01
    assert abs(live_m["mean_ap"] - off_m["mean_ap"]) <= 0.01
    lv, ov = live_m["tp_errors"]["vel_err"], off_m["tp_errors"]["vel_err"]
    assert (np.isnan(lv) and np.isnan(ov)) or abs(lv - ov) <= 0.01  # velocities travel: mAVE agrees too
