"""Stand-ins for the engine and the problem sink of ``CameraSetProcessor`` in unit tests of its
decode / assembly path (the engine itself is tested elsewhere with real models)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from qdbev_core.runtime.preprocess import prepare_frame
from qdbev_core.types import Detections


class RecordingEngine:
    """Keeps every frame it is given and, with ``prepare_hw``, what ``prepare_frame`` makes of it;
    returns one detection. ``input_hw``: the network input it reports as ``cfg.image_size``
    (``None``: no ``cfg``, so the processor decodes every image at full size)."""

    def __init__(self, input_hw: tuple[int, int] | None = None, prepare_hw: tuple[int, int] | None = None) -> None:
        if input_hw is not None:
            self.cfg = SimpleNamespace(image_size=input_hw)
        self.prepare_hw = prepare_hw
        self.frames, self.inputs = [], []
        self.temporal = SimpleNamespace(max_gap_s=1.5)
        self.last_timing = SimpleNamespace(preprocess_ms=0.0, inference_ms=0.0, postprocess_ms=0.0)

    def reset(self) -> None:
        pass

    def detect(self, frame) -> Detections:
        self.frames.append(frame)
        if self.prepare_hw is not None:
            self.inputs.append(prepare_frame(frame, self.prepare_hw))
        return Detections(boxes=np.zeros((1, 9)), scores=np.array([0.9]), labels=np.array([0]))


class ListSink:
    """A ``ProblemSink`` that keeps the counts and the problems."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.problems: list = []

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def problem(self, problem) -> None:
        self.problems.append(problem)
