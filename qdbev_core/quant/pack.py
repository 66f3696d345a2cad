"""Real low-bit model files: integers on disk, and a loader that reproduces the fake-quant model.

File = safetensors (written by ``checkpoint.save_weights``, so it has the usual JSON sidecar
with the sha256) holding a handful of *blobs*, not one tensor per layer (a per-layer header
would cost ~50 kB, more than all the float tensors of ``nano``):

==========  =======  ==========================================================================
blob        dtype    content, in ``model.named_modules()`` / ``state_dict()`` order
==========  =======  ==========================================================================
``w4``      uint8    weights of layers with <= 4 bits: offset-binary codes ``q - qmin`` (0..15),
                     all such layers concatenated, two per byte (element ``2i`` in the low
                     nibble, ``2i+1`` in the high nibble; zero-padded to even length)
``w8``      int8     weights of 5..8-bit layers: the signed codes ``q``, concatenated
``w_scale`` float16  per-output-channel weight steps (Conv2d/Linear: one per output channel;
            (default) Embedding: one per embedding dimension), concatenated; float32 with
                     ``float_dtype="float32"``
``w_scale32`` float32 steps of layers whose steps are outside float16's normal range
                     (``[6.1e-5, 65504]``; listed in the sidecar as ``scale32_layers``)
``act``     float32  ``(A, 2)``: ``[step, zero_point]`` of every enabled activation quantizer:
                     the layers' input quantizers in layer order, then the enabled output
                     quantizers (``quant.outputs``) in the order of the sidecar's ``outputs``
``floats``  float16  every other float tensor of the state dict (biases, BatchNorm weights and
            (default) running statistics, LayerNorm, ``cams_embeds`` / ``level_embeds``, weights of
                     skipped or not-yet-enabled layers) concatenated; ``float_dtype="float32"``
                     stores them in float32
``floats32`` float32 float tensors that do not fit float16 (listed in the sidecar)
``ints``    int64    non-float buffers (BatchNorm ``num_batches_tracked``)
==========  =======  ==========================================================================

Quantizer bookkeeping (``.wq.*`` / ``.aq.*`` / output quantizers' ``.oq.*`` of the state dict) is
not stored; the layout is rebuilt from the sidecar's ``config`` + ``quant_spec`` and checked
against its ``layers`` (``[[name, "w4a6" | "w8a8" | "w4" (embedding, or a layer reading an output
quantizer's grid) | "fp"], ...]`` in module order), its ``outputs`` (``[[point, "a6" | "off"],
...]``; absent in files written before output quantizers existed, whose spec rebuilds without
them) and the blob lengths, so a file that does not fit is refused with ``CheckpointError``.

Exactness: the fake-quant forward computes ``(clamp(round(x/s)+zi) - zi) * s`` in float32, so
storing ``q`` and ``s`` (float32) and rebuilding the float weight as ``q * s`` reproduces its
weights bit for bit; activation steps / zero points are stored in float32. With the default
``float_dtype="float16"``, ``pack_model`` first *rounds the model's own float tensors to
float16-representable values in place* (documented side effect; relative change <= 2^-11), so
the model you keep and the file agree exactly; ``float32`` never modifies the model.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import SAFETENSORS_METADATA, CheckpointError, load_weights, read_sidecar, save_weights
from .modules import master_weight
from .outputs import OUT_ATTR
from .quantize import out_quantizers, quant_modules, quantize_model
from .spec import QuantSpec

PACK_FORMAT = "qdbev-packed-v1"
"""Sidecar ``format`` of a packed low-bit model."""

_FP16_MAX = 65504.0
_FP16_TINY = 2.0**-14


def _nibble_pack(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15 ``(N,)`` -> ``(ceil(N/2),)`` bytes, low nibble first."""
    c = codes.to(torch.uint8).reshape(-1)
    if c.numel() % 2:
        c = torch.cat([c, c.new_zeros(1)])
    c = c.view(-1, 2)
    return c[:, 0] | (c[:, 1] << 4)


def _nibble_unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of ``_nibble_pack``: the first ``n`` codes (uint8)."""
    p = packed.to(torch.uint8).reshape(-1)
    out = torch.stack([p & 0xF, p >> 4], dim=1).reshape(-1)
    return out[:n]


def _fits_fp16(v: torch.Tensor, normal: bool = False) -> bool:
    """All finite and within float16's range (``normal``: also no magnitude below 2^-14)."""
    if v.numel() == 0:
        return True
    a = v.abs()
    ok = bool(torch.isfinite(v).all()) and float(a.max()) <= _FP16_MAX
    return ok and (not normal or float(a.min()) >= _FP16_TINY)


def _layer_tag(m: nn.Module) -> str:
    w = m.wq.bits if m.wq.is_enabled else None
    a = m.aq.bits if m.aq is not None and m.aq.is_enabled else None
    if w is None:
        return "fp"
    return f"w{w}" + (f"a{a}" if a is not None else "")


def _parse_tag(tag: str) -> tuple[int | None, int | None]:
    if tag == "fp":
        return None, None
    w, _, a = tag[1:].partition("a")
    return int(w), (int(a) if a else None)


def _skip_key(key: str, qnames: set[str], pnames: set[str] = frozenset()) -> bool:
    """Quantizer bookkeeping keys (``<layer>.wq.*`` / ``<layer>.aq.*`` / ``<point>.oq.*``)."""
    for part, names in ((".wq.", qnames), (".aq.", qnames), (f".{OUT_ATTR}.", pnames)):
        i = key.find(part)
        if i > 0 and key[:i] in names:
            return True
    return False


def _model_config_dict(model: nn.Module) -> dict | None:
    cfg = getattr(model, "cfg", None)
    return cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else None


def pack_model(
    qmodel: nn.Module, path: str | Path, meta: dict[str, Any] | None = None, float_dtype: str = "float16"
) -> dict[str, Any]:
    """Write ``qmodel`` (after ``quantize_model`` + calibration/QAT) as a packed low-bit file.

    ``meta`` is merged into the sidecar (with ``format``, ``config``, ``quant_spec``,
    ``precision``, ``float_dtype``, ``layers``, ``float32_keys``); returns the sidecar dict.
    Raises ``ValueError`` when an enabled quantizer was never initialised (calibrate first) or
    the model was not quantized. See the module doc for the float16 in-place rounding.
    """
    if float_dtype not in ("float16", "float32"):
        raise ValueError(f"float_dtype must be 'float16' or 'float32', got {float_dtype!r}")
    spec: QuantSpec | None = getattr(qmodel, "quant_spec", None)
    if spec is None:
        raise ValueError("model has no quant_spec: run quantize_model (and calibrate) before pack_model")
    cfg = _model_config_dict(qmodel)
    if cfg is None:
        raise ValueError("model has no .cfg with to_dict(); pack_model rebuilds BEVDetector models only")
    mods = quant_modules(qmodel)
    qnames = {n for n, _ in mods}
    outs = out_quantizers(qmodel)
    pnames = {n for n, _ in outs}
    for n, m in mods:
        for q in (m.wq, m.aq):
            if q is not None and q.is_enabled and not q.is_initialized:
                raise ValueError(f"{n}: quantizer enabled but never initialised; run calibrate() first")
    for n, q in outs:
        if q.is_enabled and not q.is_initialized:
            raise ValueError(f"{n}: output quantizer enabled but never initialised; run calibrate() first")

    layers: dict[str, str] = {}
    handled: set[str] = set()
    w4, w8, wsc, wsc32, act, scale32 = [], [], [], [], [], []
    with torch.no_grad():
        for n, m in mods:
            tag = _layer_tag(m)
            layers[n] = tag
            w_bits, a_bits = _parse_tag(tag)
            if w_bits is not None:
                wt = master_weight(m)
                step = m.wq.effective_step().detach().float().reshape(-1)
                if float_dtype == "float16" and _fits_fp16(step, normal=True):
                    step = step.half()
                    m.wq.step.copy_(step.float())  # round the model's steps first (see module doc)
                    wsc.append(step)
                else:
                    if float_dtype == "float16":
                        scale32.append(n)
                    (wsc32 if float_dtype == "float16" else wsc).append(step)
                q = m.wq.integers(wt).reshape(-1)
                if w_bits <= 4:
                    w4.append((q - m.wq.qmin).to(torch.uint8))
                else:
                    w8.append(q.to(torch.int8))
                handled.add(n + ".weight")
            if a_bits is not None:
                act.append(torch.stack([m.aq.effective_step().detach().float(), m.aq.effective_zero_point().detach().float()]))
        outputs: list[list[str]] = []
        for n, q in outs:
            outputs.append([n, f"a{q.bits}" if q.is_enabled else "off"])
            if q.is_enabled:
                act.append(torch.stack([q.effective_step().detach().float(), q.effective_zero_point().detach().float()]))

        floats, floats32, ints, f32_keys = [], [], [], []
        for k, v in qmodel.state_dict().items():
            if k in handled or _skip_key(k, qnames, pnames):
                continue
            if v.is_floating_point():
                v32 = v.detach().float().reshape(-1)
                if float_dtype == "float16":
                    if _fits_fp16(v32):
                        h = v32.half()
                        v.copy_(h.to(v.dtype).view_as(v))  # round the model itself (see module doc)
                        floats.append(h)
                    else:
                        f32_keys.append(k)
                        floats32.append(v32)
                else:
                    floats.append(v32)
            else:
                ints.append(v.detach().to(torch.int64).reshape(-1))

    blobs: dict[str, torch.Tensor] = {}
    if w4:
        blobs["w4"] = _nibble_pack(torch.cat(w4))
    if w8:
        blobs["w8"] = torch.cat(w8)
    if wsc:
        blobs["w_scale"] = torch.cat(wsc)
    if wsc32:
        blobs["w_scale32"] = torch.cat(wsc32)
    if act:
        blobs["act"] = torch.stack(act)
    if floats:
        blobs["floats"] = torch.cat(floats)
    if floats32:
        blobs["floats32"] = torch.cat(floats32)
    if ints:
        blobs["ints"] = torch.cat(ints)

    from ..classes import CLASS_NAMES

    side = {"classes": list(CLASS_NAMES)}
    side.update(meta or {})
    side.update({
        "format": PACK_FORMAT,
        "config": cfg,
        "quant_spec": spec.to_dict(),
        "precision": spec.name,
        "float_dtype": float_dtype,
        "layers": [[n, t] for n, t in layers.items()],
        "outputs": outputs,
        "float32_keys": f32_keys,
        "scale32_layers": scale32,
    })
    return save_weights(blobs, path, side)


class _Reader:
    def __init__(self, name: str, t: torch.Tensor | None, path: Path):
        self.name, self.t, self.pos, self.path = name, t, 0, path

    def take(self, n: int) -> torch.Tensor:
        have = 0 if self.t is None else self.t.shape[0]
        if self.pos + n > have:
            raise CheckpointError(
                f"{self.path}: blob '{self.name}' too short ({have} entries, layout needs more): "
                "the file does not fit the model config / quant spec in its sidecar"
            )
        out = self.t[self.pos : self.pos + n]
        self.pos += n
        return out

    def check_done(self) -> None:
        have = 0 if self.t is None else self.t.shape[0]
        if self.pos != have:
            raise CheckpointError(f"{self.path}: blob '{self.name}' has {have - self.pos} unused entries; layout mismatch")


def unpack_model(path: str | Path, expected_sha256: str | None = None) -> nn.Module:
    """Rebuild the fake-quant ``BEVDetector`` from a packed file (eval mode, CPU).

    Its outputs equal those of the model that was packed (bitwise, in eval mode). The file is
    verified first (``checkpoint.load_weights``: sha256 against the sidecar and
    ``expected_sha256``); any mismatch, truncation or layout error raises ``CheckpointError``.
    """
    from ..model import BEVDetector
    from ..models_manifest import config_from_dict

    path = Path(path)
    state, meta = load_weights(path, expected_sha256)
    if meta.get("format") != PACK_FORMAT:
        raise CheckpointError(f"{path}: not a packed low-bit model (sidecar format {meta.get('format')!r}, want {PACK_FORMAT!r})")
    model = BEVDetector(config_from_dict(meta["config"]))
    spec = QuantSpec.from_dict(meta["quant_spec"])
    quantize_model(model, spec)
    mods = quant_modules(model)
    layers = {n: t for n, t in meta["layers"]}
    names = [n for n, _ in mods]
    if names != [n for n, _ in meta["layers"]]:
        raise CheckpointError(f"{path}: quantized layers of the rebuilt model do not match the sidecar's 'layers'")
    qnames = set(names)
    outs = out_quantizers(model)
    pnames = {n for n, _ in outs}
    if [n for n, _ in outs] != [n for n, _ in meta.get("outputs", [])]:
        raise CheckpointError(f"{path}: output quantizers of the rebuilt model do not match the sidecar's 'outputs'")
    rd = {k: _Reader(k, state.get(k), path) for k in ("w4", "w8", "w_scale", "w_scale32", "act", "floats", "floats32", "ints")}
    if "w4" in state:  # nibble stream: expand once, read codes
        n4 = sum(master_weight(m).numel() for n, m in mods if (_parse_tag(layers[n])[0] or 99) <= 4)
        if state["w4"].numel() != (n4 + 1) // 2:
            raise CheckpointError(f"{path}: blob 'w4' has {state['w4'].numel()} bytes, layout needs {(n4 + 1) // 2}")
        rd["w4"] = _Reader("w4", _nibble_unpack(state["w4"], n4), path)
    handled: set[str] = set()
    f32_keys = set(meta.get("float32_keys", []))
    s32 = set(meta.get("scale32_layers", []))
    with torch.no_grad():
        for n, m in mods:
            w_bits, a_bits = _parse_tag(layers[n])
            wt = master_weight(m)
            if w_bits is None:
                m.wq.set_enabled(False)
                if m.aq is not None:
                    m.aq.set_enabled(False)
                continue
            m.wq.bits = w_bits
            m.wq.set_enabled(True)
            if w_bits <= 4:
                q = rd["w4"].take(wt.numel()).to(torch.float32) + m.wq.qmin
            else:
                q = rd["w8"].take(wt.numel()).to(torch.float32)
            c = wt.shape[m.wq.ch_axis]
            s = rd["w_scale32" if n in s32 else "w_scale"].take(c).to(torch.float32)
            shape = [1] * wt.dim()
            shape[m.wq.ch_axis] = -1
            wt.copy_(q.view(wt.shape) * s.view(shape))
            m.wq.step.copy_(s)
            m.wq.set_initialized(True)
            handled.add(n + ".weight")
            if m.aq is not None:
                if a_bits is None:
                    m.aq.set_enabled(False)
                else:
                    sz = rd["act"].take(1)[0]
                    m.aq.bits = a_bits
                    m.aq.step.copy_(sz[0])
                    m.aq.zero_point.copy_(sz[1])
                    m.aq.set_enabled(True)
                    m.aq.set_initialized(True)
        for (n, q), (_, tag) in zip(outs, meta.get("outputs", [])):
            if tag == "off":
                q.set_enabled(False)
                continue
            sz = rd["act"].take(1)[0]
            q.bits = int(tag[1:])
            q.step.copy_(sz[0])
            q.zero_point.copy_(sz[1])
            q.set_enabled(True)
            q.set_initialized(True)
        for k, v in model.state_dict().items():
            if k in handled or _skip_key(k, qnames, pnames):
                continue
            if v.is_floating_point():
                src = rd["floats32"] if k in f32_keys else rd["floats"]
                v.copy_(src.take(v.numel()).to(v.dtype).view_as(v))
            else:
                v.copy_(rd["ints"].take(v.numel()).to(v.dtype).view_as(v))
    for r in rd.values():
        r.check_done()
    return model.eval()


def _fp32_file_bytes(cfg_dict: dict) -> int:
    """Size of the fp32 safetensors file ``checkpoint.save_weights`` writes for this config."""
    from safetensors.torch import save

    from ..model import BEVDetector
    from ..models_manifest import config_from_dict

    state = {k: v.contiguous() for k, v in BEVDetector(config_from_dict(cfg_dict)).state_dict().items()}
    return len(save(state, metadata=SAFETENSORS_METADATA))


def model_size_report(model_or_path: nn.Module | str | Path, float_dtype: str = "float16") -> dict[str, Any]:
    """fp32 vs packed size of a quantized model (packed to a temporary file) or a packed file.

    Returns ``fp32_bytes`` (the fp32 safetensors file of the same config, as ``save_weights``
    writes it), ``packed_bytes`` (packed safetensors file on disk), ``sidecar_bytes``,
    ``ratio = fp32_bytes / packed_bytes``, ``fp32_mb`` / ``packed_mb`` (10^6 bytes), and
    ``params_by_bits`` (``{"w4": n, "w8": n, "fp": n}`` weight elements per width).
    """
    if isinstance(model_or_path, nn.Module):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "packed.safetensors"
            pack_model(copy.deepcopy(model_or_path), p, float_dtype=float_dtype)
            return model_size_report(p)
    p = Path(model_or_path)
    side = read_sidecar(p)
    if side.get("format") != PACK_FORMAT:
        raise CheckpointError(f"{p}: not a packed low-bit model")
    packed = p.stat().st_size
    fp32 = _fp32_file_bytes(side["config"])
    state, _ = load_weights(p)
    del state
    by_bits: dict[str, int] = {}
    # weight elements per width, from the rebuilt layout
    from ..model import BEVDetector
    from ..models_manifest import config_from_dict

    with torch.device("meta"):
        ref = BEVDetector(config_from_dict(side["config"]))
    mods = dict(ref.named_modules())
    for n, tag in side["layers"]:
        w, _ = _parse_tag(tag)
        key = "fp" if w is None else f"w{w}"
        by_bits[key] = by_bits.get(key, 0) + int(mods[n].weight.numel())
    return {
        "fp32_bytes": fp32,
        "packed_bytes": packed,
        "sidecar_bytes": p.with_suffix(".json").stat().st_size,
        "ratio": fp32 / packed,
        "fp32_mb": fp32 / 1e6,
        "packed_mb": packed / 1e6,
        "float_dtype": side.get("float_dtype"),
        "precision": side.get("precision"),
        "params_by_bits": by_bits,
    }
