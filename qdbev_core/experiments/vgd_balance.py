"""How big the two VGD terms are at the start of QAT: teacher vs its freshly calibrated student.

``measure_vgd_balance(teacher, dataroot, split, ...)`` builds the QAT student exactly as
``qdbev qat`` does (teacher weights, ``quantize_model`` with the ``--bits`` spec, calibration
on ``calib_batches`` training batches), then, on ``batches`` further training batches and
without any training step, computes the student's features (train mode, as the training loop
sees them, and eval mode) and the frozen teacher's, and evaluates the VGD terms for each
requested temperature. It also reports how peaked the teacher's per-channel spatial softmax is
(mean entropy / log(number of positions)) on each view, which is what sets the scale of a
channel-wise KL.

``qdbev experiment vgd-balance`` prints the result as JSON; the defaults of
``distill.VGDConfig`` were chosen from its output (numbers in that docstring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _entropy_ratio(x: torch.Tensor, temperature: float, weight: torch.Tensor | None = None) -> float:
    """Mean over (sample, channel) of H(softmax(x_c / T)) / log(#positions) (1 = flat, 0 = one-hot)."""
    n, c = x.shape[:2]
    z = x.float().reshape(n, c, -1) / temperature
    if weight is not None:
        w = weight.float().reshape(n, 1, -1)
        z = torch.where(w > 0, z + torch.log(w.clamp_min(1e-30)), torch.full_like(z, float("-inf")))
        npos = (w > 0).sum(-1).clamp_min(2).float()  # (n, 1)
    else:
        npos = torch.full((n, 1), float(z.shape[-1]))
    lp = torch.log_softmax(z, -1)
    ent = -(lp.exp() * torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp))).sum(-1)  # (n, c)
    return float((ent / torch.log(npos)).mean())


@torch.no_grad()
def measure_vgd_balance(teacher: str, dataroot: Path, split: str, version: str = "v1.0-mini", bits: str = "w4a6",
                        batches: int = 4, batch_size: int = 1, calib_batches: int = 8, seed: int = 0,
                        temperatures: Sequence[float] = (1.0, 2.0, 4.0), threads: int = 0,
                        progress: bool = True) -> dict:
    """VGD term magnitudes of ``teacher`` vs its calibrated ``bits`` student (see module doc)."""
    from tqdm import tqdm

    from ..checkpoint import read_sidecar
    from ..data.reader import NuScenesReader
    from ..distill import VGDConfig, ViewGuidedDistillation
    from ..model import BEVDetector, ModelConfig
    from ..models_manifest import resolve_model
    from ..train.data import DataConfig, DetectionDataset, collate
    from ..train.qat import QatConfig, QatRun

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model_cfg = ModelConfig.from_dict(read_sidecar(resolve_model(teacher)[0])["config"])
    student = BEVDetector(model_cfg)
    qat = QatRun(QatConfig(teacher=teacher, bits=bits, mode="qdbev", calib_batches=calib_batches), student,
                 total_steps=1, device=torch.device("cpu"))
    reader = NuScenesReader(dataroot, version, split=split)
    ds = DetectionDataset(reader, DataConfig(input_hw=tuple(model_cfg.image_size), temporal=True))
    picks = np.linspace(0, len(ds) - 1, calib_batches * batch_size).round().astype(int)
    calib = [collate([ds[(int(i), seed + int(i))] for i in picks[j:j + batch_size]])
             for j in range(0, len(picks), batch_size)]
    qat.initialize(calib)
    rng = np.random.default_rng(seed + 1)
    idx = rng.choice(len(ds), size=batches * batch_size, replace=False)
    kinds = {f"kl_T{t:g}": VGDConfig(temperature=t) for t in temperatures}
    kinds["mse"] = VGDConfig(divergence="mse")
    acc: dict[str, dict[str, list[float]]] = {}
    ent: dict[str, list[float]] = {}
    for b in tqdm(range(batches), desc="vgd-balance", disable=not progress):
        batch = collate([ds[(int(i), seed + int(i))] for i in idx[b * batch_size:(b + 1) * batch_size]])
        t_prev = s_prev = None
        if "prev_img" in batch:
            t_prev = qat.teacher.extract_bev(batch["prev_img"], batch["prev_intrinsics"], batch["prev_cam2ego"])[0]
        t_out = qat.teacher(batch["img"], batch["intrinsics"], batch["cam2ego"], t_prev, batch.get("ego_motion"),
                            batch["has_prev"].float() if "has_prev" in batch else None)
        boxes = list(batch["gt_boxes"])
        for mode in ("train", "eval"):
            student.train(mode == "train")
            if "prev_img" in batch:
                s_prev = student.extract_bev(batch["prev_img"], batch["prev_intrinsics"], batch["prev_cam2ego"])[0]
            s_out = student(batch["img"], batch["intrinsics"], batch["cam2ego"], s_prev, batch.get("ego_motion"),
                            batch["has_prev"].float() if "has_prev" in batch else None)
            for name, vcfg in kinds.items():
                terms = ViewGuidedDistillation(vcfg, model_cfg)(s_out, t_out, batch["intrinsics"], batch["cam2ego"],
                                                                 tuple(batch["img"].shape[-2:]), gt_boxes=boxes)
                d = acc.setdefault(f"{mode}/{name}", {})
                for k in ("vgd_img", "vgd_bev"):
                    d.setdefault(k, []).append(float(terms[k]))
        vgd = ViewGuidedDistillation(VGDConfig(), model_cfg)
        masks = vgd.image_masks(t_out, batch["intrinsics"], batch["cam2ego"], tuple(batch["img"].shape[-2:]), boxes)
        bev = t_out["bev"].transpose(1, 2).reshape(len(boxes), -1, model_cfg.bev_h, model_cfg.bev_w)
        for t in temperatures:
            ent.setdefault(f"img_T{t:g}", []).append(float(np.mean(
                [_entropy_ratio(f, t, m) for f, m in zip(t_out["img_feats"], masks)])))
            ent.setdefault(f"bev_T{t:g}", []).append(_entropy_ratio(bev, t))
    terms = {k: {kk: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                 for kk, v in d.items()} for k, d in acc.items()}
    for d in terms.values():
        d["bev_over_img"] = d["vgd_bev"]["mean"] / max(d["vgd_img"]["mean"], 1e-12)
    return {
        "teacher": teacher, "bits": bits, "dataroot": str(dataroot), "split": split, "batches": batches,
        "batch_size": batch_size, "calib_batches": calib_batches,
        "config": {"image_size": list(model_cfg.image_size), "bev_hw": [model_cfg.bev_h, model_cfg.bev_w],
                   "img_feat_hw": [list(f.shape[-2:]) for f in t_out["img_feats"]]},
        "terms": terms,
        "teacher_entropy_ratio": {k: float(np.mean(v)) for k, v in ent.items()},
    }
