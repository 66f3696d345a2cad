"""The node's start: collect and validate the six cameras' calibration, then subscribe the images.

``CalibrationStartup`` is a mixin of ``QdbevNode``. CameraInfo messages and the extrinsics
(``TransformInputs._lookup_extrinsics``) go into ``qdbev_core.runtime.calibration``'s
``CalibrationInputs``; a timer (``_check_startup``) reports what is still missing (in the log
once, and on ``/diagnostics``) until every camera is calibrated, builds the ``CameraRig`` (``_rig``)
and only then subscribes to the images (sensor-data QoS). A CameraInfo that changes later rebuilds
the rig.
"""

from __future__ import annotations

import time

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from qdbev_core.runtime.calibration import CalibrationInputs, CameraRig
from qdbev_core.runtime.errors import FrameAssemblyError

from .ros_io import camera_info_to_intrinsics

__all__ = ["CalibrationStartup"]


class CalibrationStartup:
    """CameraInfo + extrinsics -> ``CameraRig``, then the image subscriptions (mixin of ``QdbevNode``)."""

    def _init_calibration(self) -> None:
        """Calibration bookkeeping and the CameraInfo subscriptions (images come once it is complete)."""
        self._calib = CalibrationInputs(self.camera_names, self.p["frame_id"])
        self._info_problem: dict[str, str] = {}
        self._rig: CameraRig | None = None
        self._image_subs: list = []
        self._init_transforms()
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                              durability=DurabilityPolicy.VOLATILE)
        self._info_subs = [
            self.create_subscription(CameraInfo, topic, lambda m, i=i: self._guarded(self._on_camera_info, m, i),
                                     info_qos)
            for i, topic in enumerate(self.camera_info_topics)
        ]

    def _on_camera_info(self, msg: CameraInfo, index: int) -> None:
        cam = self.camera_names[index]
        k, w, h, frame = camera_info_to_intrinsics(msg)
        try:
            changed = self._calib.set_camera_info(cam, k, w, h, frame)
        except FrameAssemblyError as exc:
            have = cam in self._calib.intrinsics
            then = ("ignoring this CameraInfo, the last valid calibration stays in use" if have
                    else "the camera stays uncalibrated")
            self._report(cam, exc.kind, f"{exc}; {then}")
            if not have:
                self._info_problem[cam] = exc.reason
            return
        self._info_problem.pop(cam, None)
        if changed:
            self._build_rig()  # calibration changed while running (e.g. new resolution)
            self.get_logger().info(f"{cam}: new CameraInfo {w}x{h} applied")

    def _check_startup(self) -> None:
        """Until every camera is calibrated: collect, validate, report; then subscribe images."""
        if self._rig is not None:
            return
        waited = time.monotonic() - self._started
        all_ok = True
        for cam in self.camera_names:
            missing = ""
            if cam not in self._calib.intrinsics:
                missing = f"valid CameraInfo on {self.camera_info_topics[self.camera_names.index(cam)]}"
                if cam in self._info_problem:
                    missing += f" (last one rejected: {self._info_problem[cam]})"
            else:
                t, what = self._lookup_extrinsics(cam)
                if t is None:
                    missing = f"extrinsics: {what}"
                else:
                    self._calib.extrinsics[cam] = t
            if missing:
                all_ok = False
                self.diag.set_calibration(cam, missing)
                if waited > 2.0:
                    kind = "extrinsics_missing" if missing.startswith("extrinsics") else "camera_info_missing"
                    self._log_once((cam, "waiting_" + kind), "warning",
                                   f"{cam}: still waiting for {missing} (node starts once all six cameras are "
                                   "calibrated)")
        if all_ok and self._build_rig():
            self._subscribe_images()

    def _build_rig(self) -> bool:
        """Build the rig from the calibration received so far; report the first bad camera."""
        try:
            rig = self._calib.build()
        except FrameAssemblyError as exc:
            ok = self.camera_names[:self.camera_names.index(exc.camera)] if exc.camera in self.camera_names else ()
            for cam in ok:  # the cameras before the bad one are fine
                self.diag.set_calibration(cam, "")
            self._report(exc.camera, exc.kind, str(exc))
            self.diag.set_calibration(exc.camera, exc.reason)
            return False
        for cam in self.camera_names:
            self.diag.set_calibration(cam, "")
        self._rig = rig
        return True

    def _subscribe_images(self) -> None:
        msg_type = Image if self.p["image_transport"] == "raw" else CompressedImage
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.p["image_qos_depth"],
                         reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
        self._image_subs = [
            self.create_subscription(msg_type, topic, lambda m, i=i: self._guarded(self._on_image, m, i), qos)
            for i, topic in enumerate(self.image_topics)
        ]
        self._startup_timer.cancel()
        self.diag.start_running()
        sizes = ", ".join(f"{c} {c_.width}x{c_.height}" for c, c_ in self._rig.calibrations.items())
        self.get_logger().info(f"calibration complete ({sizes}); subscribed to {msg_type.__name__} on "
                               f"{', '.join(self.image_topics)}")
