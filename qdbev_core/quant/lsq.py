"""Learned-step-size (LSQ) fake quantizers with straight-through gradients.

One module, ``LsqQuantizer``, serves both kinds of tensor (Esser et al., "Learned Step Size
Quantization", ICLR 2020; the affine activation form follows LSQ+ with an integer zero point):

``kind="weight"``: per-output-channel **symmetric signed**, integer grid ``[-2^(b-1), 2^(b-1)-1]``
(4 bit: -8..7), one step ``s_c`` per channel along ``ch_axis``::

    q = clamp(round(w / s_c), -2^(b-1), 2^(b-1) - 1)        w_hat = q * s_c

``kind="act"``: per-tensor **affine unsigned**, integer grid ``[0, 2^b - 1]``, one learned step
``s`` and one learned zero point ``z`` (a float parameter, rounded in the forward pass)::

    zi = round(z)   q = clamp(round(x / s) + zi, 0, 2^b - 1)   x_hat = (q - zi) * s

Calibration sets ``zi = round(-lo / s)`` from the observed range ``[lo, hi]`` (``lo <= 0 <=
hi``), so an input that is never negative (after a ReLU) gets ``zi = 0`` and uses all ``2^b``
levels for ``[0, hi]``: the "unsigned after ReLU" case needs no separate mode. A signed input
gets ``zi`` near the middle of the grid.

Gradients (LSQ paper, eq. 3, with ``v = x / s + zi`` compared against the grid's ends):

- input: straight-through, ``1`` inside ``qmin < v < qmax``, ``0`` where clipped;
- step: ``round(x/s) - x/s`` inside, ``qmin - zi`` below, ``qmax - zi`` above; summed over the
  elements the step covers and multiplied by the LSQ gradient scale ``g = 1 / sqrt(N * qmax)``
  where ``N`` = elements per step (weights: elements of one output channel; activations:
  ``x.numel() / x.shape[0]``, the features per sample);
- zero point: ``0`` inside, ``-s`` where clipped (STE through ``round``), times ``g``.

The forward pass is a custom ``autograd.Function`` so it is *exactly* ``round``/``clamp``/``*``
in float32 (no ``(a - b).detach() + b`` tricks that perturb the last bit): a packed model
(``quant.pack``) rebuilt from the integers reproduces it bit for bit.

Step initialisation (``init_weight`` / ``init_from_observations``): ``"mse"`` (default) searches
clipping ratios ``alpha`` of the channel's ``max|w|`` (weights) or of ``[lo, hi]`` (activations,
on a random subsample of calibration values) for the smallest quantization MSE; ``"minmax"``
uses ``alpha = 1``; ``"lsq"`` (weights only) is the paper's ``2 * mean|w| / sqrt(qmax)``.

States: ``enabled`` (buffer; disabled = exact pass-through in full precision, used for
progressive QAT), ``initialized`` (buffer; an enabled quantizer that was never calibrated
initialises itself from the first tensor it sees), and ``observing`` (Python flag set by
``quantize.calibrate``: pass-through while recording a sample of the input). Change the first
two with ``set_enabled`` / ``set_initialized`` (they keep Python mirrors that the forward pass
reads, so it never waits on the device; ``load_state_dict`` refreshes the mirrors).
"""

from __future__ import annotations

import math

import torch
from torch import nn

STEP_EPS = 1e-8
"""Smallest step used in the forward pass (``step.clamp_min(STEP_EPS)``)."""

_ALPHAS = torch.linspace(0.1, 1.0, 37)
"""Clipping ratios tried by the MSE step search."""


def weight_range(bits: int) -> tuple[int, int]:
    """``(qmin, qmax)`` of a signed symmetric ``bits``-bit weight grid."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def act_range(bits: int) -> tuple[int, int]:
    """``(qmin, qmax)`` of an unsigned ``bits``-bit activation grid."""
    return 0, 2**bits - 1


def fake_quant(x: torch.Tensor, step: torch.Tensor, zero_point: torch.Tensor | None, qmin: int, qmax: int) -> torch.Tensor:
    """``(clamp(round(x / s) + round(z), qmin, qmax) - round(z)) * s`` (``z = None``: no zero point).

    Plain tensor ops (export to ONNX ``Div``/``Round``/``Clip``/``Mul``); the autograd
    function below computes its forward with this very function, so both paths agree bitwise.
    """
    r = torch.round(x / step)
    if zero_point is None:
        return r.clamp(qmin, qmax) * step
    zi = torch.round(zero_point)
    return ((r + zi).clamp(qmin, qmax) - zi) * step


class _LsqFn(torch.autograd.Function):
    """``x_hat = (clamp(round(x / s) + zi, qmin, qmax) - zi) * s`` with LSQ gradients."""

    @staticmethod
    def forward(ctx, x, step, zero_point, qmin: int, qmax: int, grad_scale: float):
        u = x / step
        zi = None if zero_point is None else torch.round(zero_point)
        ctx.save_for_backward(u, step, zi if zi is not None else torch.zeros((), device=x.device))
        ctx.has_zp = zero_point is not None
        ctx.qmin, ctx.qmax, ctx.g = qmin, qmax, grad_scale
        return fake_quant(x, step, zero_point, qmin, qmax)

    @staticmethod
    def backward(ctx, grad):
        u, step, zi = ctx.saved_tensors
        qmin, qmax, g = ctx.qmin, ctx.qmax, ctx.g
        v = u + zi
        below = v <= qmin
        above = v >= qmax
        inside = ~(below | above)
        grad_x = grad * inside
        ds = torch.where(inside, torch.round(u) - u, torch.where(below, qmin - zi, qmax - zi))
        gs = grad * ds * g
        if step.dim() == 0:
            gs = gs.sum()
        else:
            red = [i for i in range(gs.dim()) if step.shape[i] == 1 and gs.shape[i] != 1]
            if red:
                gs = gs.sum(dim=red, keepdim=True)
        grad_zp = None
        if ctx.has_zp:
            grad_zp = (grad * torch.where(inside, torch.zeros_like(u), -step) * g).sum().reshape(zi.shape)
        return grad_x, gs, grad_zp, None, None, None


def _mse_weight_steps(w2: torch.Tensor, qmin: int, qmax: int, alphas: torch.Tensor = _ALPHAS) -> torch.Tensor:
    """Per-row step of ``w2 (C, K)`` minimising ``||quant(w) - w||^2`` over clip ratios."""
    amax = w2.abs().amax(dim=1)  # (C,)
    best = torch.full_like(amax, float("inf"))
    best_s = amax / qmax
    for a in alphas.tolist():
        s = (a * amax / qmax).clamp_min(STEP_EPS).unsqueeze(1)
        err = ((w2 / s).round().clamp(qmin, qmax) * s - w2).pow(2).sum(1)
        better = err < best
        best = torch.where(better, err, best)
        best_s = torch.where(better, s.squeeze(1), best_s)
    return best_s


def _fill_zero_steps(s: torch.Tensor) -> torch.Tensor:
    """All-zero channels (e.g. zero-initialised offset layers) get the mean non-zero step, else 1e-3.

    A tiny step would clip every later value of that channel and, with the straight-through
    gradient being 0 where clipped, freeze it at zero.
    """
    pos = s > STEP_EPS
    fill = s[pos].mean() if bool(pos.any()) else torch.tensor(1e-3, dtype=s.dtype, device=s.device)
    return torch.where(pos, s, fill)


class LsqQuantizer(nn.Module):
    """LSQ fake quantizer; see the module doc for the two kinds and their grids.

    Args:
        bits: 2..8 for weights, 2..16 for activations.
        kind: ``"weight"`` (per-channel symmetric signed) or ``"act"`` (per-tensor affine).
        num_channels: number of steps for weights (size of the channel axis).
        ch_axis: channel axis of the weight tensor (0 for Conv2d/Linear, 1 for Embedding).

    Parameters: ``step`` (``(C,)`` for weights, ``()`` for activations) and, for activations,
    ``zero_point`` (``()``). Buffers: ``enabled``, ``initialized`` (bool).
    """

    def __init__(self, bits: int, kind: str = "weight", num_channels: int = 1, ch_axis: int = 0):
        super().__init__()
        if kind not in ("weight", "act"):
            raise ValueError(f"kind must be 'weight' or 'act', got {kind!r}")
        lim = 8 if kind == "weight" else 16
        if not 2 <= int(bits) <= lim:
            raise ValueError(f"{kind} bits must be in 2..{lim}, got {bits}")
        self.bits = int(bits)
        self.kind = kind
        self.ch_axis = ch_axis
        if kind == "weight":
            self.step = nn.Parameter(torch.ones(num_channels))
            self.zero_point = None
        else:
            self.step = nn.Parameter(torch.ones(()))
            self.zero_point = nn.Parameter(torch.zeros(()))
        self.register_buffer("enabled", torch.tensor(True))
        self.register_buffer("initialized", torch.tensor(False))
        # Python mirrors of the two buffers: the forward pass reads these, so it never syncs
        # with the device to look at a flag
        self._on = True
        self._init = False
        self.observing = False
        self._obs: dict | None = None

    # --- grid -------------------------------------------------------------------------------
    @property
    def qmin(self) -> int:
        return weight_range(self.bits)[0] if self.kind == "weight" else act_range(self.bits)[0]

    @property
    def qmax(self) -> int:
        return weight_range(self.bits)[1] if self.kind == "weight" else act_range(self.bits)[1]

    def set_bits(self, bits: int) -> None:
        """Change the bit width (marks the quantizer uninitialised: recalibrate)."""
        self.bits = int(bits)
        self.set_initialized(False)

    @property
    def is_enabled(self) -> bool:
        return self._on

    @property
    def is_initialized(self) -> bool:
        return self._init

    def set_enabled(self, flag: bool) -> None:
        """On: fake-quantize; off: exact pass-through (progressive QAT)."""
        self.enabled.fill_(bool(flag))
        self._on = bool(flag)

    def set_initialized(self, flag: bool = True) -> None:
        self.initialized.fill_(bool(flag))
        self._init = bool(flag)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._on = bool(self.enabled.item())
        self._init = bool(self.initialized.item())

    def extra_repr(self) -> str:
        return f"{self.kind}, bits={self.bits}, enabled={self._on}, initialized={self._init}"

    # --- effective values (what the forward pass uses; what pack stores) ----------------------
    def effective_step(self) -> torch.Tensor:
        """``step.clamp_min(STEP_EPS)`` (shape of ``step``)."""
        return self.step.clamp_min(STEP_EPS)

    def effective_zero_point(self) -> torch.Tensor | None:
        """``round(zero_point)`` for activations, ``None`` for weights."""
        return None if self.zero_point is None else torch.round(self.zero_point)

    def _step_view(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        if self.kind == "act":
            return step
        shape = [1] * x.dim()
        shape[self.ch_axis] = -1
        return step.view(shape)

    def grad_scale(self, x: torch.Tensor) -> float:
        """LSQ ``1 / sqrt(N * qmax)`` with ``N`` the elements covered by one step."""
        if self.kind == "weight":
            n = x.numel() // max(1, x.shape[self.ch_axis])
        else:
            n = x.numel() // max(1, x.shape[0]) if x.dim() > 0 else 1
        return 1.0 / math.sqrt(max(1, n) * self.qmax)

    # --- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self._observe(x)
            return x
        if not self._on:
            return x
        if not self._init:
            with torch.no_grad():
                if self.kind == "weight":
                    self.init_weight(x)
                else:
                    self._obs = None
                    self._observe(x)
                    self.init_from_observations()
        step = self._step_view(x, self.effective_step())
        if torch.is_grad_enabled() and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            return _LsqFn.apply(x, step, self.zero_point, self.qmin, self.qmax, self.grad_scale(x))
        return fake_quant(x, step, self.zero_point, self.qmin, self.qmax)  # inference / export

    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """The integer codes ``q`` (int32) the forward pass uses for ``x`` (no grad)."""
        with torch.no_grad():
            step = self._step_view(x, self.effective_step())
            r = torch.round(x / step)
            zi = self.effective_zero_point()
            if zi is not None:
                r = r + zi
            return r.clamp(self.qmin, self.qmax).to(torch.int32)

    # --- initialisation ----------------------------------------------------------------------
    @torch.no_grad()
    def init_weight(self, w: torch.Tensor, method: str = "mse") -> None:
        """Per-channel steps from the weight tensor: ``"mse"`` | ``"minmax"`` | ``"lsq"``."""
        if self.kind != "weight":
            raise RuntimeError("init_weight is for weight quantizers")
        w2 = w.detach().float().transpose(0, self.ch_axis).reshape(w.shape[self.ch_axis], -1)
        if method == "mse":
            s = _mse_weight_steps(w2, self.qmin, self.qmax)
        elif method == "minmax":
            s = w2.abs().amax(1) / self.qmax
        elif method == "lsq":
            s = 2.0 * w2.abs().mean(1) / math.sqrt(self.qmax)
        else:
            raise ValueError(f"unknown weight init {method!r}; use mse, minmax or lsq")
        self.step.data.copy_(_fill_zero_steps(s).to(self.step.dtype))
        self.set_initialized(True)

    def start_observing(self) -> None:
        self.observing = True
        self._obs = None

    def stop_observing(self) -> None:
        self.observing = False

    @torch.no_grad()
    def _observe(self, x: torch.Tensor, max_samples: int = 16384) -> None:
        flat = x.detach().float().reshape(-1)
        if flat.numel() == 0:
            return
        lo, hi = flat.min().item(), flat.max().item()
        if flat.numel() > max_samples:
            g = torch.Generator(device="cpu").manual_seed(1234 + (0 if self._obs is None else len(self._obs["samples"])))
            idx = torch.randint(0, flat.numel(), (max_samples,), generator=g).to(flat.device)
            flat = flat[idx]
        if self._obs is None:
            self._obs = {"lo": lo, "hi": hi, "samples": [flat.cpu()]}
        else:
            self._obs["lo"] = min(self._obs["lo"], lo)
            self._obs["hi"] = max(self._obs["hi"], hi)
            self._obs["samples"].append(flat.cpu())

    @torch.no_grad()
    def init_from_observations(self, method: str = "mse") -> bool:
        """Activation step and zero point from what ``_observe`` recorded; False if nothing was seen."""
        if self.kind != "act":
            raise RuntimeError("init_from_observations is for activation quantizers")
        if not self._obs:
            return False
        lo, hi = min(self._obs["lo"], 0.0), max(self._obs["hi"], 0.0)
        xs = torch.cat(self._obs["samples"])
        self._obs = None
        if hi - lo <= 0:
            hi = lo + 1e-3
        levels = self.qmax - self.qmin
        alphas = _ALPHAS.tolist() if method == "mse" else [1.0]
        if method not in ("mse", "minmax"):
            raise ValueError(f"unknown activation init {method!r}; use mse or minmax")
        best = (float("inf"), (hi - lo) / levels, 0.0)
        for a in alphas:
            s = max((hi - lo) * a / levels, STEP_EPS)
            zi = float(min(max(round(-lo * a / s), self.qmin), self.qmax))
            err = (((xs / s).round() + zi).clamp(self.qmin, self.qmax).sub(zi).mul(s) - xs).pow(2).mean().item()
            if err < best[0]:
                best = (err, s, zi)
        self.step.data.fill_(best[1])
        self.zero_point.data.fill_(best[2])
        self.set_initialized(True)
        return True
