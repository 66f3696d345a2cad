"""Bird's-eye-view plot: ground truth vs predictions in the ego frame, with velocity arrows."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..classes import CLASS_NAMES
from ..geometry import box_corners
from .colors import CLASS_COLORS_RGB


def render_bev(
    gt_boxes: NDArray[np.float64] | None,
    pred_boxes: NDArray[np.float64] | None,
    pred_labels: NDArray[np.int64] | None = None,
    pred_scores: NDArray[np.float64] | None = None,
    extent_m: float = 55.0,
    title: str = "",
    size_px: int = 720,
) -> NDArray[np.uint8]:
    """Top-down RGB image (x forward = up, y left = left) of GT (black) and predictions.

    Boxes are ``(N, 9)`` ego-frame arrays; velocity arrows show 1 s of motion. Returns an
    ``(size_px, size_px, 3)`` uint8 array rendered with matplotlib's Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, ax = plt.subplots(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    try:
        ax.set_xlim(extent_m, -extent_m)  # +y (left) drawn on the left
        ax.set_ylim(-extent_m, extent_m)
        ax.set_aspect("equal")
        ax.grid(True, lw=0.3, alpha=0.5)
        for r in (10, 20, 30, 40, 50):
            ax.add_patch(plt.Circle((0, 0), r, fill=False, lw=0.3, color="0.6"))
        ax.add_patch(plt.Rectangle((-0.95, -1.0), 1.9, 4.6, color="k", alpha=0.6))  # ego (x fwd up)

        def draw(boxes: NDArray[np.float64], colors: list, lw: float, ls: str) -> None:
            c = box_corners(boxes)[:, :4, :2]
            for i in range(len(boxes)):
                poly = np.vstack([c[i], c[i][:1]])
                ax.plot(poly[:, 1], poly[:, 0], color=colors[i], lw=lw, ls=ls)
                front = c[i][:2].mean(axis=0)
                ax.plot([boxes[i, 1], front[1]], [boxes[i, 0], front[0]], color=colors[i], lw=lw)
                if boxes.shape[1] >= 9 and np.hypot(boxes[i, 7], boxes[i, 8]) > 0.2:
                    ax.arrow(boxes[i, 1], boxes[i, 0], boxes[i, 8], boxes[i, 7], color=colors[i],
                             width=0.05, head_width=0.6, length_includes_head=True)

        if gt_boxes is not None and len(gt_boxes):
            draw(np.asarray(gt_boxes), ["k"] * len(gt_boxes), 1.0, "-")
        if pred_boxes is not None and len(pred_boxes):
            labels = np.zeros(len(pred_boxes), dtype=np.int64) if pred_labels is None else pred_labels
            cols = [np.array(CLASS_COLORS_RGB[CLASS_NAMES[int(k)]]) / 255.0 for k in labels]
            draw(np.asarray(pred_boxes), cols, 1.4, "--")
        ax.set_title(title or "BEV (ego frame): GT black, predictions coloured", fontsize=8)
        ax.set_xlabel("y (m, left +)", fontsize=7)
        ax.set_ylabel("x (m, forward +)", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.tight_layout()
        fig.canvas.draw()
        buf = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)
    return buf
