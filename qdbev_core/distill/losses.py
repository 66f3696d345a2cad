"""Feature divergences for distillation: channel-wise KL (CWD) with a spatial weight, and MSE.

Channel-wise distillation (Shu et al., ICCV 2021): each channel ``c`` of a feature map
``(N, C, H, W)`` becomes a distribution over the ``H*W`` positions, ``p_c = softmax(x_c / T)``,
and the loss is ``T^2 * mean_{n, c} KL(p^teacher_{n,c} || p^student_{n,c})``.

**How the mask enters** (our choice): as a log-weight on *both* distributions,
``p_c(i) ∝ w_i * exp(x_c(i) / T)``; positions with ``w_i = 0`` get logit ``-inf`` and are
excluded from the softmax, a binary mask therefore restricts the distribution to the masked
positions, and weights > 1 (foreground emphasis) give those positions proportionally more
mass in both. The result is a proper KL between two distributions on the mask's support:
``>= 0``, and ``0`` exactly when student and teacher agree there (up to a per-channel
constant shift, which the softmax ignores). Weighting the per-position KL terms instead would
not be a divergence (single terms can be negative). Samples whose mask is all zero are left
out of the mean.

MSE alternative (the ablation): ``sum_i w_i * mean_c (s - t)^2 / sum_i w_i``.

The teacher is always detached.
"""

from __future__ import annotations

import torch


def channel_wise_kl(
    student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """Channel-wise spatial-softmax KL(teacher || student) * T^2, mean over channels and samples.

    Args:
        student, teacher: ``(N, C, H, W)`` (or ``(N, C, L)``) features.
        weight: optional ``(N, 1, H, W)`` (or ``(N, 1, L)``) non-negative spatial weight / mask.
        temperature: ``T``.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ")
    n, c = student.shape[:2]
    s = student.float().reshape(n, c, -1) / temperature
    t = teacher.detach().float().reshape(n, c, -1) / temperature
    if weight is None:
        ls = torch.log_softmax(s, -1)
        lt = torch.log_softmax(t, -1)
        kl = (lt.exp() * (lt - ls)).sum(-1)  # (N, C)
        return kl.mean() * temperature**2
    w = weight.detach().float().reshape(n, 1, -1)
    if w.shape[-1] != s.shape[-1]:
        raise ValueError(f"weight has {w.shape[-1]} positions, features {s.shape[-1]}")
    pos = w > 0  # (N, 1, L)
    keep = pos.reshape(n, -1).any(-1)  # samples with a non-empty mask
    if not bool(keep.any()):
        return student.sum() * 0.0
    logw = torch.where(pos, torch.log(w.clamp_min(1e-30)), torch.full_like(w, float("-inf")))
    ls = torch.log_softmax(s[keep] + logw[keep], -1)
    lt = torch.log_softmax(t[keep] + logw[keep], -1)
    p = pos[keep].expand_as(ls)
    zero = torch.zeros_like(ls)
    ls = torch.where(p, ls, zero)
    lt = torch.where(p, lt, zero)
    kl = (lt.exp() * p * (lt - ls)).sum(-1)
    return kl.mean() * temperature**2


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i w_i * mean_c (s - t)^2 / sum_i w_i`` (plain mean without ``weight``)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ")
    d = (student.float() - teacher.detach().float()).pow(2)
    if weight is None:
        return d.mean()
    n, c = student.shape[:2]
    w = weight.detach().float().reshape(n, 1, -1)
    tot = w.sum()
    if float(tot) <= 0:
        return student.sum() * 0.0
    return (d.reshape(n, c, -1).mean(1, keepdim=True) * w).sum() / tot


def feature_divergence(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor | None = None,
    kind: str = "kl",
    temperature: float = 1.0,
) -> torch.Tensor:
    """``channel_wise_kl`` (``kind="kl"``) or ``masked_mse`` (``kind="mse"``)."""
    if kind == "kl":
        return channel_wise_kl(student, teacher, weight, temperature)
    if kind == "mse":
        return masked_mse(student, teacher, weight)
    raise ValueError(f"divergence must be 'kl' or 'mse', got {kind!r}")


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean Bernoulli KL(sigmoid(t/T) || sigmoid(s/T)) * T^2 (response distillation of sigmoid logits)."""
    s = student_logits.float() / temperature
    t = teacher_logits.detach().float() / temperature
    pt = torch.sigmoid(t)
    ls1, ls0 = torch.nn.functional.logsigmoid(s), torch.nn.functional.logsigmoid(-s)
    lt1, lt0 = torch.nn.functional.logsigmoid(t), torch.nn.functional.logsigmoid(-t)
    kl = pt * (lt1 - ls1) + (1 - pt) * (lt0 - ls0)
    return kl.mean() * temperature**2
