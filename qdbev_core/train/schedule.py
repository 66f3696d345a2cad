"""Learning-rate schedules (``LambdaLR`` multipliers of the peak learning rate).

- ``warmup_cosine``: linear warm-up then one cosine decay over the whole run.
- ``staged_warmup_cosine``: the same shape restarted at every stage boundary, for progressive
  QAT. With one cosine over all stages the last stage (the decoder and heads) is switched on at
  75 % of the run, where the multiplier is already ~0.15: the newly quantized layers then adapt
  at a learning rate too small to recover. Restarting gives each stage its own warm-up (the
  freshly calibrated quantizer steps move gently at first) and its own decay.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.01) -> float:
    """LR multiplier at ``step``: ``step/warmup`` during warm-up, then cosine from 1 to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def stage_warmup(warmup_steps: int, stage_len: int) -> int:
    """Warm-up steps of one stage: ``warmup_steps``, at most a quarter of the stage."""
    return max(0, min(warmup_steps, stage_len // 4))


def staged_warmup_cosine(step: int, stage_starts: Sequence[int], total_steps: int, warmup_steps: int,
                         min_ratio: float = 0.01) -> float:
    """LR multiplier at ``step`` with a warm-up + cosine of its own in every stage.

    ``stage_starts``: the step at which each stage is switched on, ascending, the first one 0.
    A stage runs from its start to the next stage's start (the last one to ``total_steps``); its
    warm-up is ``stage_warmup(warmup_steps, stage length)``."""
    if not stage_starts or stage_starts[0] != 0 or list(stage_starts) != sorted(stage_starts):
        raise ValueError(f"stage_starts must be ascending and start at 0, got {list(stage_starts)}")
    i = bisect.bisect_right(stage_starts, step) - 1
    start = stage_starts[i]
    end = stage_starts[i + 1] if i + 1 < len(stage_starts) else total_steps
    length = max(1, end - start)
    return warmup_cosine(step - start, length, stage_warmup(warmup_steps, length), min_ratio)
