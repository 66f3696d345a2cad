"""Warm start: initialise a new run's weights from a trained model of another BEV grid size.

``qdbev train --init-from nano-fp32-yaw`` copies every weight of the source model into the new one
(mmdet's ``load_from``: weights only, fresh optimizer and schedule). The only parameters whose
shape may differ are the ones laid out on the BEV grid; they are resampled bilinearly so a
model trained on a coarse grid starts a finer one with the same spatial layout:

=========================  ====================  ==========================================
``encoder.bev_embedding``  (bev_h * bev_w, C)    learned BEV queries, row-major ``r * W + c``
``encoder.pos_row``        (bev_h, C/2)          positional encoding along rows (+y)
``encoder.pos_col``        (bev_w, C - C/2)      positional encoding along columns (+x)
=========================  ====================  ==========================================

A model with more BEV encoder layers than the source (``--model-set enc_layers=2`` from a
one-layer nano) starts each extra layer as a copy of the source's last encoder layer: layers are
iterative refinements of the same BEV, so the copy begins as a second pass of the trained one.

Any other shape mismatch, or a missing / unexpected key, is an error naming the parameters:
warm-starting across backbones or channel widths silently is how runs go wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BEV_GRID_PARAMS = ("encoder.bev_embedding.weight", "encoder.pos_row.weight", "encoder.pos_col.weight")


def _resample_grid(src: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """``(H*W, C)`` row-major grid features -> ``(H'*W', C)`` by bilinear resampling."""
    c = src.shape[1]
    grid = src.T.reshape(1, c, *src_hw)
    out = F.interpolate(grid, size=dst_hw, mode="bilinear", align_corners=False)
    return out.reshape(c, -1).T.contiguous()


def _resample_axis(src: torch.Tensor, n: int) -> torch.Tensor:
    """``(L, C)`` per-row (or per-column) features -> ``(n, C)`` by linear resampling."""
    out = F.interpolate(src.T.unsqueeze(0), size=n, mode="linear", align_corners=False)
    return out.squeeze(0).T.contiguous()


_ENC_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")


def _add_encoder_layers(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` plus copies of its last encoder layer for the target's extra encoder layers."""
    src_layers = {int(m.group(1)) for k in state if (m := _ENC_LAYER.match(k))}
    if not src_layers:
        return state
    last = max(src_layers)
    out = dict(state)
    for key in target:
        m = _ENC_LAYER.match(key)
        if m and int(m.group(1)) > last and key not in state:
            src = f"encoder.layers.{last}.{m.group(2)}"
            if src in state:
                out[key] = state[src]  # load_state_dict copies it into the layer
    return out


def adapt_state_dict(state: dict[str, torch.Tensor], model: nn.Module, source: str | Path) -> dict[str, torch.Tensor]:
    """``state`` with the BEV-grid parameters resampled to ``model``'s grid.

    Raises ``ValueError`` naming ``source`` and the offending keys when anything else differs.
    """
    target = model.state_dict()
    state = _add_encoder_layers(state, target)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ValueError(
            f"{source}: cannot warm-start from it: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} (another architecture?)"
        )
    out = dict(state)
    bad = []
    src_rows = state.get("encoder.pos_row.weight")
    src_cols = state.get("encoder.pos_col.weight")
    for key, want in target.items():
        have = state[key]
        if have.shape == want.shape:
            continue
        if key == "encoder.bev_embedding.weight" and src_rows is not None and src_cols is not None:
            src_hw = (src_rows.shape[0], src_cols.shape[0])
            dst_hw = (target["encoder.pos_row.weight"].shape[0], target["encoder.pos_col.weight"].shape[0])
            if have.shape[1] == want.shape[1] and have.shape[0] == src_hw[0] * src_hw[1]:
                out[key] = _resample_grid(have.float(), src_hw, dst_hw).to(want.dtype)
                continue
        if key in ("encoder.pos_row.weight", "encoder.pos_col.weight") and have.shape[1] == want.shape[1]:
            out[key] = _resample_axis(have.float(), want.shape[0]).to(want.dtype)
            continue
        bad.append(f"{key} {tuple(have.shape)} -> {tuple(want.shape)}")
    if bad:
        raise ValueError(f"{source}: shapes differ beyond the BEV grid: {'; '.join(bad[:5])}")
    return out


def warm_start(model: nn.Module, source: str | Path) -> dict[str, str]:
    """Load a manifest name or ``.safetensors`` file (sha256-verified) into ``model``.

    Returns ``{"source": ..., "sha256": ...}`` for the run's record. Quantized (packed or
    fake-quant) sources are refused: warm starts are for full-precision training.
    """
    from ..checkpoint import load_weights
    from ..models_manifest import full_precision_file

    path, sha, _ = full_precision_file(source, "--init-from")
    state, meta = load_weights(path, expected_sha256=sha)
    model.load_state_dict(adapt_state_dict(state, model, path))
    return {"source": str(source), "sha256": str(meta.get("sha256", sha or ""))}
