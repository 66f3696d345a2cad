"""Model weight files: safetensors + a JSON sidecar, verified before anything is loaded.

A model file ``name.safetensors`` travels with ``name.json`` holding the model config, the class
list, the command and data that produced it, metrics, and the sha256 of the weights file. Weights
are never unpickled: safetensors only stores tensors, so a hostile file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

SIDECAR_SUFFIX = ".json"


class CheckpointError(ValueError):
    """A weights file is missing, truncated, tampered with or does not fit the model."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


SAFETENSORS_METADATA = {"format": "pt"}
"""Header metadata of every weights file: one key only. safetensors serialises the header
metadata from a hash map whose iteration order changes from call to call, so with two keys the
same tensors could be written as two different byte strings (two sha256s); with one key the file
bytes depend on the tensors alone."""


def sidecar_path(weights: str | Path) -> Path:
    """``x.safetensors`` -> ``x.json``."""
    return Path(weights).with_suffix(SIDECAR_SUFFIX)


def save_weights(state: dict[str, torch.Tensor], path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``state`` to ``path`` (safetensors) and ``meta`` + sha256 to the sidecar JSON.

    Returns the sidecar dict as written. Tensors are made contiguous and shared storage is
    broken (safetensors refuses aliased tensors).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(flat, str(tmp), metadata=SAFETENSORS_METADATA)
    tmp.replace(path)
    side = dict(meta)
    side["file"] = path.name
    side["sha256"] = sha256_file(path)
    side["num_tensors"] = len(flat)
    side["num_parameters"] = int(sum(v.numel() for v in flat.values()))
    write_sidecar(path, side)
    return side


def write_sidecar(path: str | Path, side: dict[str, Any]) -> None:
    """Write ``side`` as the sidecar JSON of the weights file ``path`` (sorted keys, indented)."""
    sidecar_path(path).write_text(json.dumps(side, indent=2, sort_keys=True, default=str) + "\n")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar JSON of a weights file; ``CheckpointError`` naming the file if absent/corrupt."""
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"{side}: sidecar JSON missing; every qdbev weights file needs its .json beside it")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{side}: not valid JSON ({exc}); the sidecar is corrupt") from exc


def load_weights(path: str | Path, expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load and verify a weights file; returns ``(state_dict, sidecar)``.

    The file's sha256 is checked against ``expected_sha256`` (e.g. from the model manifest)
    and against its sidecar. Truncation, tampering and non-safetensors files raise
    ``CheckpointError`` with the file name and the problem.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    meta = read_sidecar(path)
    digest = sha256_file(path)
    for source, want in (("manifest", expected_sha256), ("sidecar", meta.get("sha256"))):
        if want and want != digest:
            raise CheckpointError(
                f"{path}: sha256 {digest[:12]}... does not match the {source} ({want[:12]}...); "
                "the file is truncated, modified or not the one the manifest names"
            )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    return state, meta


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``model.load_state_dict(state)`` with a clear error listing what does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with other shapes (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise CheckpointError(f"{source}: weights do not fit this model config: " + "; ".join(parts))
    model.load_state_dict(state)
