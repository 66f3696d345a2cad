"""``qdbev_node``: six synchronized cameras in, ``vision_msgs/Detection3DArray`` out.

Inner workings (the Autoware camera-BEV node pattern, docs/DESIGN.md §5):

1. Parameters are declared from ``qdbev_core.runtime.node_parameters`` (one list: type,
   default, range or choices, description, whether it can change at run time; values in
   ``config/qdbev.yaml``); bad values stop the node with one clear FATAL line (an integer
   literal for a float parameter is taken as the float). ``LIVE_PARAMETERS`` can change at run time (``ros2 param set``) and take effect with
   the next message; every other parameter is declared read-only, so ``SetParameters`` refuses
   it with a reason instead of accepting a value that would be ignored (docs/NODE.md).
2. The engine is loaded first (a missing or corrupt model file is fatal within seconds, naming
   the file). CameraInfo of all six cameras and their camera -> ``frame_id`` extrinsics (TF via
   ``tf2_ros`` when importable, else our own ``/tf_static`` subscription; or a calibration YAML)
   are collected and validated by ``qdbev_core.runtime.calibration``; the node reports what it is
   still waiting for in the log (once) and on ``/diagnostics``.
3. Only then are the images subscribed (sensor-data QoS). An approximate-time synchronizer
   (``qdbev_core.runtime.sync.ApproxTimeSync``, also where ``message_filters`` is importable: its queue
   overflow drops the newest message after a bag loop) groups the six streams; each
   complete set replaces the pending one in a one-slot mailbox (the replaced set is counted as
   dropped: newest wins, no backlog).
4. A worker thread (off the executor thread that receives images) hands the set to
   ``qdbev_core.runtime.processor.CameraSetProcessor`` (decode, assemble the ``Frame``, time
   checks, engine: the code offline replay runs) and publishes the velocities
   (``~/detections/velocity``, ``qdbev_msgs/ObjectVelocityArray``: ``vision_msgs/Detection3D``
   has no velocity field) and then the detections (``~/detections``, ``Detection3DArray``) with
   one header (stamp = CAM_FRONT's header stamp, ``frame_id`` parameter), markers and timings
   (per stage, from the last camera's arrival to publish: ``qdbev_ros.stage_timing``, the
   ``qdbev_node: timing`` status on ``/diagnostics``). The processor decodes the six images in
   parallel (a thread pool of its own).
   Consumers pair the two by exact stamp (``qdbev_ros.conversions.msg_to_detections``).
   With ``publish_autoware_objects`` the same detections also go out as Autoware's
   ``autoware_perception_msgs/DetectedObjects`` on ``~/objects`` (``qdbev_ros.autoware``).

Bad input never stops the node: each problem is logged (rate-limited per (camera, kind) by
``qdbev_ros.log_limit.LogLimiter``: a new episode is logged, a burst is summarized), counted, and
reported on ``/diagnostics``; frames with bad images are skipped (no output rather than wrong
output). Time going backwards (a bag loop) or a forward gap longer than the temporal fusion's
``max_gap_s`` resets the engine's temporal state (logged and counted); an exception in the engine
skips that frame. A watchdog turns "images arrive but no camera set forms" (one camera's stamps
off the others') and "sets form but nothing is published" into ERROR after ``camera_timeout_s``,
naming the camera and its offset.

Run: ``ros2 run qdbev qdbev_node --ros-args --params-file config/qdbev.yaml`` or, from the venv,
``qdbev_node --ros-args --params-file config/qdbev.yaml`` / ``python -m qdbev_ros.node ...``.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


_STOP = threading.Event()
"""Set by SIGINT in the ``qdbev_node`` process: main() stops cleanly at the next safe point."""


def _request_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """SIGINT handler of the console script: remember the request, raise nothing.

    A ``KeyboardInterrupt`` raised at a random point can land inside a pybind11 call of rclpy /
    onnxruntime and abort the process ("terminate called after throwing ... KeyboardInterrupt",
    exit -6). rclpy's own handler (chained before this one) shuts the context down, which ends
    the spin; before that, main() checks ``_STOP`` after each startup step.
    """
    _STOP.set()


if __name__ == "__main__" or Path(sys.argv[0]).name == "qdbev_node":
    # from the first line on: Ctrl-C while importing rclpy / numpy / torch (seconds on a loaded
    # machine; a launch system may stop it then) must not be a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, _request_stop)

# below the handler: a SIGINT while importing these (traceback compiles regexes: seconds on a
# loaded machine) must not be a KeyboardInterrupt traceback either
import time
import traceback
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from std_msgs.msg import Header

from qdbev_core.runtime.node_parameters import LIVE_PARAMETERS, PARAMETER_NAMES
from qdbev_core.runtime.processor import CameraSetProcessor, OutputLimits
from qdbev_core.types import CAMERA_NAMES, Detections

from .calibration_startup import CalibrationStartup
from .diagnostics import PIPELINE, DiagnosticsState
from .image_intake import ImageIntake
from .log_limit import LogLimiter
from .outputs import OutputPublishing
from .problem_log import ProblemLogging
from .ros_parameters import ParameterHandling
from .stage_timing import SetTrace, StageTimes
from .startup_error import NodeStartupError
from .transform_inputs import TransformInputs, resolve_config_path
from .watchdog import Watchdog

NODE_NAME = "qdbev_node"

TIMING_LOG_PERIOD_S = 60.0
"""How often the per-stage p50s are logged (when sets were published meanwhile)."""

__all__ = ["LIVE_PARAMETERS", "NODE_NAME", "PARAMETER_NAMES", "NodeStartupError", "QdbevNode", "main", "resolve_config_path",
           "spin_until_shutdown"]

RCLError = _rclpy_impl.RCLError


class QdbevNode(ParameterHandling, ProblemLogging, OutputPublishing, TransformInputs, CalibrationStartup,
                ImageIntake, Watchdog, Node):
    """The detector node (see the module docstring).

    Its parts live in one module each: parameters (``ros_parameters``), problem reporting
    (``problem_log``), publishers (``outputs``), TF / odometry (``transform_inputs``), calibration
    and the start (``calibration_startup``), images and sets (``image_intake``), the watchdog
    (``watchdog``); here: the start in named steps, the worker thread and shutdown.

    Args:
        engine: an already built engine (tests); ``None`` loads ``model`` with ``load_engine``.
        node_name: ROS node name.
        **kwargs: passed to ``rclpy.node.Node`` (e.g. ``parameter_overrides``, ``context``).

    Raises ``NodeStartupError`` on a bad parameter, model or calibration file.
    """

    def __init__(self, engine=None, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.p = self._declare_parameters()
        self._init_bookkeeping()
        self._create_publishers()
        self._diag_timer = self.create_timer(self.p["diagnostics_period_s"],
                                             lambda: self._guarded(self._publish_diagnostics))
        # engine first: a bad model fails in seconds, before any waiting for cameras
        self.engine = engine if engine is not None else self._load_engine()
        self.processor = CameraSetProcessor(self.engine, self, self.camera_names)
        self._init_calibration()
        self._init_image_intake()
        self._init_watchdog()
        self._start_worker()
        self._start_timers()
        self._log_ready()

    # ---- start, in steps ---------------------------------------------------------------------------

    def _init_bookkeeping(self) -> None:
        """Camera order, diagnostics, log limits, per-stage timing."""
        self.camera_names: tuple[str, ...] = CAMERA_NAMES
        self.diag = DiagnosticsState(self.camera_names, self.p["camera_timeout_s"],
                                     error_hold_s=self.p["error_hold_s"])
        self._logged: set[tuple[str, str]] = set()
        self._limiter = LogLimiter()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._stage_times = StageTimes()
        self._timing_logged = (time.monotonic(), 0)  # when, and after how many recorded sets

    def _load_engine(self):
        from qdbev_core.engine import load_engine

        model = self.p["model"]
        try:
            return load_engine(model, backend=self.p["backend"], device=self.p["device"],
                               score_threshold=self.p["score_threshold"], topk=self.p["max_detections"])
        except Exception as exc:  # noqa: BLE001 - every load failure is fatal with the file named
            raise NodeStartupError(f"cannot load model {model!r} (backend {self.p['backend']}, device "
                                   f"{self.p['device']}): {exc}") from exc

    def _start_worker(self) -> None:
        """The worker thread: takes the newest set from the mailbox, processes and publishes it."""
        self._worker = threading.Thread(target=self._work, name="qdbev_worker", daemon=True)
        self._worker.start()

    def _start_timers(self) -> None:
        """Startup check (until calibrated), watchdog, parameter callbacks."""
        self._startup_timer = self.create_timer(0.2, lambda: self._guarded(self._check_startup))
        self._watchdog = self.create_timer(0.1, lambda: self._guarded(self._check_cameras))
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _log_ready(self) -> None:
        extr = (f"TF {self.p['frame_id']} <- camera" if self.p["calibration_source"] == "tf"
                else self.p["calibration_file"])
        self.get_logger().info(
            f"qdbev_node: engine {getattr(self.engine, 'name', type(self.engine).__name__)} "
            f"ready; waiting for CameraInfo on {', '.join(self.camera_info_topics)} and extrinsics ({extr}); "
            f"synchronizer: {type(self.sync).__module__}.{type(self.sync).__name__}; "
            f"{self.processor.decode_workers} image decode thread(s)"
        )

    # ---- worker thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._mailbox.take()
            if item is None:
                return
            msgs, first, degraded, trace = item
            trace.picked = time.monotonic()
            try:
                if self.process_set(msgs, first, degraded, trace=trace) is None:
                    self._skipped_since_output += 1
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if self._mailbox.stopped or not self.context.ok():
                    # Ctrl-C shuts the context down before destroy_node() stops this thread: the
                    # set in flight cannot be published any more. That is shutdown, not a fault.
                    return
                self._report(PIPELINE, "internal", f"unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    def process_set(self, msgs: Sequence[Any], arrival: float | None = None,
                    degraded: bool = False, trace: SetTrace | None = None) -> Detections | None:
        """Process one camera set (``CameraSetProcessor``) and publish the result (worker thread;
        callable in tests).

        ``arrival``: receipt of its first image (the pipeline latency's start); ``trace``: its
        times so far, for the per-stage timing (``qdbev_ros.stage_timing``).
        Returns the detections, or ``None`` when the set was skipped (reason logged and counted).
        """
        arrival = time.monotonic() if arrival is None else arrival
        trace = SetTrace.at(arrival) if trace is None else trace
        rig = self._rig
        if rig is None:
            return None
        limits = OutputLimits(self.p["score_threshold"], self.p["max_detections"])
        result = self.processor.process(rig, msgs, limits, ego_pose=self._ego_pose_lookup(), degraded=degraded,
                                        dropped_sets=self.diag.counters["dropped_sets"])
        trace.processed = time.monotonic()
        if result.detections is None:
            return None
        self._publish(result, arrival, trace)
        return result.detections

    # ---- diagnostics / shutdown --------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        """``/diagnostics`` (pipeline, cameras, per-stage timing); now and then the timing in the log."""
        header = Header(stamp=self.get_clock().now().to_msg())
        arr = self.diag.build(header, self.p["allow_missing_cameras"])
        arr.status.append(self._stage_times.status())
        self.pub_diag.publish(arr)
        now, (last, count) = time.monotonic(), self._timing_logged
        if now - last >= TIMING_LOG_PERIOD_S and self._stage_times.recorded > count:
            self._timing_logged = (now, self._stage_times.recorded)
            self.get_logger().info(self._stage_times.log_line())

    def destroy_node(self) -> None:
        mailbox, worker = getattr(self, "_mailbox", None), getattr(self, "_worker", None)  # absent if __init__ failed
        if mailbox is not None:
            mailbox.stop()
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=10.0)
        processor = getattr(self, "processor", None)
        if processor is not None and (worker is None or not worker.is_alive()):
            processor.close()  # the decode threads (a worker still in detect() keeps them)
        super().destroy_node()


def spin_until_shutdown(executor, context) -> None:
    """Spin ``executor`` until Ctrl-C or shutdown of ``context``; shutdown is never an error.

    rclpy's SIGINT handler shuts the context down asynchronously: when that lands between the
    executor's ``context.ok()`` check and its wait-set creation, rclpy raises ``RCLError`` ("failed
    to initialize wait set: the given context is not valid") instead of returning. That is the
    shutdown the user asked for, so it ends the spin like ``KeyboardInterrupt`` does; an
    ``RCLError`` while the context is still valid is a real error and propagates.
    """
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if context.ok():
            raise


def main(args: list[str] | None = None) -> int:
    """Console script ``qdbev_node``: run the node until Ctrl-C / shutdown; 1 on a fatal error.

    Ctrl-C at any moment (while the engine loads, while spinning, during cleanup) exits 0.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _request_stop)
    try:
        return _run(args)
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0


def _run(args: list[str] | None) -> int:
    if _STOP.is_set():
        return 0
    rclpy.init(args=args)
    try:
        node = QdbevNode()
    except Exception as exc:  # noqa: BLE001 - sorted below
        if _STOP.is_set() or not rclpy.ok():  # Ctrl-C while starting: it failed because of the shutdown
            rclpy.try_shutdown()
            return 0
        if not isinstance(exc, NodeStartupError):
            raise
        rclpy.logging.get_logger(NODE_NAME).fatal(f"{exc}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    try:
        executor.add_node(node)
        if not _STOP.is_set():  # a Ctrl-C while the engine loaded: stop now
            spin_until_shutdown(executor, node.context)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
