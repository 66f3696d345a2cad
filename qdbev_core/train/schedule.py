"""Learning-rate schedule: linear warm-up then cosine decay (a ``LambdaLR`` multiplier)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.01) -> float:
    """LR multiplier at ``step``: ``step/warmup`` during warm-up, then cosine from 1 to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
