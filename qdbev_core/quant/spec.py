"""``QuantSpec``: which layer gets how many bits, which are skipped, and the progressive stages.

Names are module names of the model (``model.named_modules()``), matched with ``fnmatch``
globs (``*`` also matches dots). Resolution for a layer: skipped if any ``skip`` pattern
matches; else the *last* matching ``overrides`` entry ``(pattern, w_bits, a_bits)``; else
``(default_weight_bits, default_act_bits)``.

Defaults (docs/DESIGN.md §2): W4A6 everywhere, the first convolution
(``backbone.stem.conv``) and the final prediction layers (``heads.*.out``,
``heads.dense.*_out``, = ``BEVDetector.final_layer_names()``) at W8A8. Embedding tables
(``nn.Embedding``: BEV queries, positional rows/columns, class embeddings) are weights too and
are quantized at the weight bits (per embedding dimension) unless ``quantize_embeddings`` is
False: the paper's sizes (BEVFormer-tiny ~126 MB fp32 -> QD-BEV-tiny 15.8 MB, 8x) only add up
with every weight tensor at 4 bit. Their activation bits are unused (the input is indices).

Progressive QAT stages (the paper's baseline): backbone -> neck -> BEV encoder -> decoder (the
decoder stage includes the prediction heads).

Output quantizers (``quantize_outputs``, ``quant.outputs``): also quantize the outputs of the
residual blocks, their residual branches and shortcuts, the stem and the FPN convolutions, so an
integer runtime can stay integer through the backbone and neck. On by default for new specs
(``QuantSpec()``, ``from_bits``, so for new QAT runs); a spec dict without the field (written
before it existed: sidecars of older packed / QAT files) reads as ``False``, so those files
rebuild exactly as they were made. A point's bits are ``bits_for(point)[1]`` (the activation
bits; ``skip`` patterns remove it).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from torch import nn

DEFAULT_OVERRIDES: list[tuple[str, int, int]] = [
    ("backbone.stem.conv", 8, 8),
    ("heads.*.out", 8, 8),
    ("heads.dense.*_out", 8, 8),
]
"""First conv + final prediction layers at W8A8."""

DEFAULT_STAGES: list[list[str]] = [["backbone."], ["neck."], ["encoder."], ["decoder.", "heads."]]
"""Progressive-QAT order (module-name prefixes per stage)."""

_BITS_RE = re.compile(r"^\s*w(\d+)\s*a(\d+)\s*$", re.IGNORECASE)


def parse_bits(text: str) -> tuple[int, int]:
    """``"w4a6"`` -> ``(4, 6)``; ``ValueError`` for anything else or out-of-range widths."""
    m = _BITS_RE.match(str(text))
    if not m:
        raise ValueError(f"bits must look like 'w4a6', got {text!r}")
    w, a = int(m.group(1)), int(m.group(2))
    if not 2 <= w <= 8:
        raise ValueError(f"weight bits must be 2..8, got {w} in {text!r}")
    if not 2 <= a <= 16:
        raise ValueError(f"activation bits must be 2..16, got {a} in {text!r}")
    return w, a


def _is_target(module: nn.Module, quantize_embeddings: bool) -> str | None:
    """``"conv"`` / ``"linear"`` / ``"embedding"`` for layers ``quantize_model`` swaps, else None."""
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if quantize_embeddings and isinstance(module, nn.Embedding):
        return "embedding"
    return None


@dataclass
class QuantSpec:
    """Bit widths per layer. ``QuantSpec()`` is the W4A6 QD-BEV recipe; ``QuantSpec.from_bits("w8a8")``
    sets the defaults (the 8-bit overrides stay)."""

    default_weight_bits: int = 4
    default_act_bits: int = 6
    overrides: list[tuple[str, int, int]] = field(default_factory=lambda: [tuple(o) for o in DEFAULT_OVERRIDES])
    skip: list[str] = field(default_factory=list)
    """Patterns of layers left in full precision (not swapped)."""
    quantize_embeddings: bool = True
    stages: list[list[str]] = field(default_factory=lambda: [list(s) for s in DEFAULT_STAGES])
    weight_init: str = "mse"
    """Weight step init: ``mse`` | ``minmax`` | ``lsq`` (see ``lsq.LsqQuantizer.init_weight``)."""
    act_init: str = "mse"
    """Activation step init from calibration data: ``mse`` | ``minmax``."""
    quantize_outputs: bool = True
    """Quantize block / branch / shortcut / stem / FPN outputs too (``quant.outputs``); a layer
    reading such an output gets no input quantizer of its own. ``False``: inputs of Conv2d /
    Linear only (the recipe before output quantizers; what a spec dict without this field means)."""

    def __post_init__(self) -> None:
        self.overrides = [(str(p), int(w), int(a)) for p, w, a in self.overrides]
        self.skip = [str(p) for p in self.skip]
        self.stages = [[str(p) for p in s] for s in self.stages]
        parse_bits(f"w{self.default_weight_bits}a{self.default_act_bits}")
        for p, w, a in self.overrides:
            parse_bits(f"w{w}a{a}")
        if self.weight_init not in ("mse", "minmax", "lsq"):
            raise ValueError(f"weight_init must be mse, minmax or lsq, got {self.weight_init!r}")
        if self.act_init not in ("mse", "minmax"):
            raise ValueError(f"act_init must be mse or minmax, got {self.act_init!r}")

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_bits(cls, bits: str, **kwargs) -> "QuantSpec":
        """``QuantSpec.from_bits("w4a6")``: defaults from the string, other fields as given."""
        w, a = parse_bits(bits)
        return cls(default_weight_bits=w, default_act_bits=a, **kwargs)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["overrides"] = [list(o) for o in self.overrides]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown QuantSpec fields {unknown}")
        d = dict(d)
        d.setdefault("quantize_outputs", False)  # specs written before output quantizers existed
        return cls(**d)

    @property
    def name(self) -> str:
        """``"w4a6"`` (the defaults)."""
        return f"w{self.default_weight_bits}a{self.default_act_bits}"

    # --- resolution --------------------------------------------------------------------------
    def bits_for(self, name: str) -> tuple[int, int] | None:
        """``(w_bits, a_bits)`` of the layer called ``name``, or None when it is skipped."""
        if any(fnmatchcase(name, p) for p in self.skip):
            return None
        bits = (self.default_weight_bits, self.default_act_bits)
        for p, w, a in self.overrides:
            if fnmatchcase(name, p):
                bits = (w, a)
        return bits

    def output_bits(self, point: str) -> int | None:
        """Activation bits of the output quantizer at ``point``, or None (off or skipped)."""
        if not self.quantize_outputs:
            return None
        bits = self.bits_for(point)
        return None if bits is None else bits[1]

    def stage_of(self, name: str) -> int | None:
        """Index of the first stage whose prefix ``name`` starts with (None: in no stage)."""
        for i, prefixes in enumerate(self.stages):
            if any(name.startswith(p) for p in prefixes):
                return i
        return None

    def layers(self, model: nn.Module) -> list[dict]:
        """One row per Conv2d / Linear (/ Embedding) of ``model``, quantized or not yet.

        Keys: ``name``, ``type``, ``params`` (weight elements), ``w_bits``, ``a_bits`` (None
        when skipped or not applicable), ``shared_input`` (the output-quantizer point whose grid
        the layer reads instead of quantizing its input, else None), ``stage``, ``enabled`` (None
        for a model that has not been through ``quantize_model``).
        """
        from .modules import QUANT_TYPES

        rows = []
        for name, m in model.named_modules():
            kind = _is_target(m, self.quantize_embeddings)
            if kind is None:
                continue
            bits = self.bits_for(name)
            enabled = None
            shared = getattr(m, "shared_input_from", None)
            if isinstance(m, QUANT_TYPES):
                bits = (m.wq.bits, m.aq.bits if m.aq is not None else None)
                enabled = m.wq.is_enabled
            rows.append({
                "name": name,
                "type": kind,
                "params": int(m.weight.numel()) if kind != "embedding" else int(m._parameters["weight"].numel()),
                "w_bits": None if bits is None else bits[0],
                "a_bits": None if bits is None or kind == "embedding" else bits[1],
                "shared_input": shared,
                "stage": self.stage_of(name),
                "enabled": enabled,
            })
        return rows

    def table(self, model: nn.Module) -> str:
        """Printable ``layer -> bits`` table plus a summary by bit width."""
        rows = self.layers(model)
        header = ["layer", "type", "params", "W", "A", "stage", "on"]
        lines = []
        for r in rows:
            lines.append([
                r["name"], r["type"], str(r["params"]),
                "fp" if r["w_bits"] is None else str(r["w_bits"]),
                ("shr" if r["shared_input"] else "-") if r["a_bits"] is None else str(r["a_bits"]),
                "-" if r["stage"] is None else str(r["stage"]),
                "-" if r["enabled"] is None else ("y" if r["enabled"] else "n"),
            ])
        widths = [max([len(h)] + [len(l[i]) for l in lines]) for i, h in enumerate(header)]
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
        out += ["  ".join(v.ljust(w) for v, w in zip(l, widths)) for l in lines]
        if any(r["shared_input"] for r in rows):
            out.append("(A = shr: the input is an output quantizer's grid, no input quantizer of its own)")
        from .outputs import output_points

        outs = output_points(model)
        if outs:
            out.append("")
            out.append(f"output quantizers ({len(outs)}; quant.outputs):")
            ow = max(len(n) for n, _ in outs)
            for n, q in outs:
                out.append(f"  {n.ljust(ow)}  A{q.bits}  stage {self.stage_of(n)}  {'on' if q.is_enabled else 'off'}")
        by_bits: dict[str, int] = {}
        for r in rows:
            k = "fp32" if r["w_bits"] is None else f"W{r['w_bits']}"
            by_bits[k] = by_bits.get(k, 0) + r["params"]
        total = sum(by_bits.values()) or 1
        out.append("")
        out.append(f"spec {self.name}: " + ", ".join(
            f"{k}: {v} params ({100.0 * v / total:.1f}%)" for k, v in sorted(by_bits.items())))
        return "\n".join(out)
