"""Pictures of what the detector sees: camera mosaics with projected boxes, and BEV plots."""

from .bev import render_bev
from .cameras import render_camera_mosaic

__all__ = ["render_bev", "render_camera_mosaic"]
