"""``Detections`` -> ``visualization_msgs/MarkerArray`` for RViz.

The array starts with one ``DELETEALL`` marker (clears the previous frame's markers), then per
detection ``i``:

- namespace ``boxes``: a ``CUBE`` at the box centre (mid-height), yaw as quaternion, scale =
  full size ``(l, w, h)``, class colour, alpha 0.4;
- namespace ``labels``: a ``TEXT_VIEW_FACING`` ``"<class> <score>"`` above the box;
- namespace ``velocity``: an ``ARROW`` from the centre along ``(vx, vy)`` scaled to the
  distance covered in ``arrow_horizon_s`` seconds (only when the speed is above
  ``min_speed``).

Marker ids are ``i`` in each namespace; every marker carries the given header (frame
``base_link``, stamp of the frame).
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from qdbev_core.types import Detections
from qdbev_core.viz.colors import CLASS_COLORS_RGB

from .conversions import copy_header, yaw_to_quaternion

__all__ = ["detections_to_markers"]

_DEFAULT_COLOR = (200, 200, 200)


def _color(name: str, alpha: float) -> ColorRGBA:
    r, g, b = CLASS_COLORS_RGB.get(name, _DEFAULT_COLOR)
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=float(alpha))


def detections_to_markers(det: Detections, header: Header, box_alpha: float = 0.4,
                          min_speed: float = 0.2, arrow_horizon_s: float = 1.0,
                          text_height: float = 0.8) -> MarkerArray:
    """MarkerArray (``DELETEALL`` first) of ``det``; boxes are in ``header.frame_id``."""
    out = MarkerArray()
    out.markers.append(Marker(header=copy_header(header), action=Marker.DELETEALL))
    boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, det.boxes.shape[-1] if det.boxes.size else 9)
    forever = Duration(sec=0, nanosec=0)
    for i, (box, score, label) in enumerate(zip(boxes, det.scores, det.labels)):
        name = det.class_names[int(label)]
        x, y, z, l, w, h, yaw = (float(v) for v in box[:7])
        qx, qy, qz, qw = yaw_to_quaternion(yaw)

        cube = Marker(header=copy_header(header), ns="boxes", id=i, type=Marker.CUBE, action=Marker.ADD,
                      color=_color(name, box_alpha), lifetime=forever)
        cube.pose.position.x, cube.pose.position.y, cube.pose.position.z = x, y, z
        cube.pose.orientation.x, cube.pose.orientation.y = qx, qy
        cube.pose.orientation.z, cube.pose.orientation.w = qz, qw
        cube.scale.x, cube.scale.y, cube.scale.z = max(l, 1e-3), max(w, 1e-3), max(h, 1e-3)
        out.markers.append(cube)

        text = Marker(header=copy_header(header), ns="labels", id=i, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, color=_color(name, 1.0), lifetime=forever,
                      text=f"{name} {float(score):.2f}")
        text.pose.position.x, text.pose.position.y, text.pose.position.z = x, y, z + 0.5 * h + 0.5 * text_height
        text.pose.orientation.w = 1.0
        text.scale.z = float(text_height)
        out.markers.append(text)

        if box.shape[0] >= 9:
            vx, vy = float(box[7]), float(box[8])
            if np.hypot(vx, vy) > min_speed:
                arrow = Marker(header=copy_header(header), ns="velocity", id=i, type=Marker.ARROW,
                               action=Marker.ADD, color=_color(name, 1.0), lifetime=forever)
                arrow.pose.orientation.w = 1.0
                arrow.points = [Point(x=x, y=y, z=z),
                                Point(x=x + vx * arrow_horizon_s, y=y + vy * arrow_horizon_s, z=z)]
                arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.15, 0.4, 0.4  # shaft / head diameter, head length
                out.markers.append(arrow)
    return out
