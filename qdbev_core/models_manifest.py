"""``models/manifest.yaml``: the bundled models by name, and loading a model by name or path.

Each manifest entry names a weights file under ``models/`` and its sha256; a file that does not
match is refused. A path to any ``.safetensors`` file with a qdbev sidecar works too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, load_into, load_weights, read_sidecar


def models_dir() -> Path:
    """``$QDBEV_MODELS_DIR``, else the repo's / installed share's ``models/`` folder."""
    env = os.environ.get("QDBEV_MODELS_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "models", here.parents[3] / "share" / "qdbev" / "models" if len(here.parents) > 3 else None):
        if cand is not None and (cand / "manifest.yaml").is_file():
            return cand
    return here.parent / "models"


def read_manifest(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` from ``manifest.yaml`` (``{}`` when there is none yet)."""
    import yaml

    path = path or models_dir() / "manifest.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("models", [])
    return {e["name"]: e for e in entries}


def default_model(path: Path | None = None) -> str | None:
    """The manifest's ``default:`` model name (the one the demo, the node's config and the launch
    files use); the first entry when the manifest names none; None for an empty manifest.

    Raises ``CheckpointError`` when ``default:`` names a model the manifest does not list.
    """
    import yaml

    path = path or models_dir() / "manifest.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    names = [e["name"] for e in data.get("models", [])]
    name = data.get("default")
    if name is None:
        return names[0] if names else None
    if name not in names:
        raise CheckpointError(f"{path}: 'default: {name}' is not one of its models ({', '.join(names) or 'none'})")
    return str(name)


def resolve_model(model: str | Path) -> tuple[Path, str | None, dict[str, Any] | None]:
    """``(weights path, expected sha256 or None, manifest entry or None)`` for a name or a path."""
    manifest = read_manifest()
    if str(model) in manifest:
        entry = manifest[str(model)]
        return models_dir() / entry["file"], entry.get("sha256"), entry
    path = Path(model)
    if path.suffix == ".safetensors" or path.exists():
        return path, None, None
    known = ", ".join(manifest) or "(manifest empty)"
    raise CheckpointError(f"model {model!r} is neither a name in {models_dir() / 'manifest.yaml'} ({known}) nor a file")


def full_precision_file(model: str | Path, role: str) -> tuple[Path, str | None, dict[str, Any]]:
    """``(path, manifest sha256 or None, sidecar)`` of a full-precision weights file.

    ``role`` names what the model is used for in error messages (``"--init-from"``, ``"teacher"``).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a quantized one (packed
    or fake-quant): warm starts and teachers must be full precision.
    """
    from .checkpoint import read_sidecar

    path, sha, _ = resolve_model(model)
    if not path.is_file():
        raise FileNotFoundError(f"{role} {model}: {path} does not exist")
    side = read_sidecar(path)
    if side.get("format") or "quant_spec" in side:
        raise ValueError(f"{role} {model}: {path} is a quantized model; a full-precision one is needed")
    return path, sha, side


def load_model(model: str | Path):
    """A ``BEVDetector`` (eval mode, CPU) with verified weights, from a name or a path.

    A packed low-bit file (sidecar ``format: qdbev-packed-v1``) comes back as the fake-quant
    model it was packed from; an fp32 file as the plain detector.
    """
    from .model import BEVDetector, ModelConfig

    path, sha, _ = resolve_model(model)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found (named by {model!r})")
    from .quant.pack import PACK_FORMAT, unpack_model

    if read_sidecar(path).get("format") == PACK_FORMAT:
        return unpack_model(path, expected_sha256=sha).eval()
    state, meta = load_weights(path, expected_sha256=sha)
    if "config" not in meta:
        raise CheckpointError(f"{path}: sidecar has no 'config'; cannot rebuild the model")
    net = BEVDetector(ModelConfig.from_dict(meta["config"]))
    if "quant_spec" in meta:  # a fake-quant QAT checkpoint: same structure first, then its steps
        from .quant import QuantSpec, quantize_model

        quantize_model(net, QuantSpec.from_dict(meta["quant_spec"]))
    load_into(net, state, path)
    return net.eval()
