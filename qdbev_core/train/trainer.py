"""Full-precision training loop: AdamW + warm-up/cosine, clipping, checkpoints, exact resume.

Run layout (``cfg.out``)::

    config.json                 TrainConfig + model config of the run
    metrics.csv                 one row per logged step: lr, every loss term, s/step; NDS rows
    curves.png                  loss (and NDS) vs step
    checkpoints/last.pt         full training state (model, optimizer, scheduler, RNG, step)
    model.safetensors + .json   the weights (and sidecar) of the latest checkpoint / final model
    eval/step_XXXXXX/           results.json + the devkit's metrics_summary.json

Exact resume: every training item is a pure function of ``(sample index, seed)`` drawn from a
per-step schedule, and RNG states are checkpointed, so an interrupted run continues with the
same batches and the same next-step loss. Multi-process (``torchrun``): DDP, gloo on CPU or
NCCL on CUDA; rank r takes items ``r::world`` of each global batch; only rank 0 writes files.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoint import read_sidecar, save_weights, sidecar_path, write_sidecar
from ..classes import CLASS_NAMES
from ..data.reader import NuScenesReader
from ..model import BEVDetector, DetectionLoss, ModelConfig, get_config
from .config import TrainConfig
from .data import DetectionDataset, collate, data_config_for
from .qat import QatRun
from .twin_distill import TwinDistillation
from .schedule import warmup_cosine


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/Inf."""


class StepSampler(torch.utils.data.Sampler):
    """Yields ``(index, item_seed)`` for steps ``start..steps`` of this rank's share.

    Global position ``p`` maps to epoch ``p // n`` and slot ``p % n`` of that epoch's
    permutation (seeded by ``seed + epoch``); the item seed is derived from ``(seed, p)``.
    """

    def __init__(self, n: int, start_step: int, steps: int, batch: int, rank: int, world: int, seed: int):
        self.n, self.start, self.steps, self.batch = n, start_step, steps, batch
        self.rank, self.world, self.seed = rank, world, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng(self.seed + epoch).permutation(self.n)}
        return self._perms[epoch]

    def __iter__(self):
        gb = self.batch * self.world
        for step in range(self.start, self.steps):
            for j in range(self.batch):
                p = step * gb + self.rank + j * self.world
                yield int(self._perm(p // self.n)[p % self.n]), int((self.seed * 1_000_003 + p) % (2**31))

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.batch


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings; backbone LR multiplier."""
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = cfg.lr * (cfg.backbone_lr_mult if name.startswith("backbone.") else 1.0)
        wd = cfg.weight_decay if p.dim() >= 2 and "embed" not in name else 0.0
        groups.setdefault((lr, wd), []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "lr": lr, "weight_decay": wd, "initial_lr": lr} for (lr, wd), ps in groups.items()],
        lr=cfg.lr,
    )


def _to(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def training_step_losses(model, criterion, batch: dict, temporal: bool, qat: QatRun | None = None,
                         twin: TwinDistillation | None = None) -> dict[str, torch.Tensor]:
    """Forward + loss for one batch (the previous frame's BEV is computed without gradients).

    With ``qat`` using distillation, the VGD terms are added (``vgd`` enters ``loss``; the
    per-view terms are reported alongside); likewise ``twin_vgd`` with twin-render distillation.
    """
    core = model.module if hasattr(model, "module") else model
    prev_bev = ego_motion = prev_valid = None
    if temporal and "prev_img" in batch:
        with torch.no_grad():
            prev_bev, _, _ = core.extract_bev(batch["prev_img"], batch["prev_intrinsics"], batch["prev_cam2ego"])
        ego_motion = batch["ego_motion"]
        prev_valid = batch["has_prev"].float()
    out = model(batch["img"], batch["intrinsics"], batch["cam2ego"], prev_bev, ego_motion, prev_valid)
    targets = [{"boxes": b, "labels": lb} for b, lb in zip(batch["gt_boxes"], batch["gt_labels"])]
    losses = criterion(out, targets)
    if qat is not None and qat.vgd is not None:
        extra = qat.distillation_losses(out, batch, targets)
        losses.update(extra)
        losses["loss"] = losses["loss"] + extra["vgd"]
    if twin is not None:
        extra = twin.losses(out, batch, targets)
        losses.update(extra)
        losses["loss"] = losses["loss"] + extra["twin_vgd"]
    return losses


@dataclass
class _Run:
    """One training invocation: where it runs, what it trains and with what."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    model_cfg: ModelConfig
    model: BEVDetector
    qat: QatRun | None
    twin: TwinDistillation | None
    criterion: DetectionLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    dataset: DetectionDataset

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"


def train(cfg: TrainConfig, progress: bool = True, stop_at: int | None = None) -> dict:
    """Train (or resume) the run in ``cfg.out``; returns the last logged metrics.

    ``stop_at`` ends this invocation after that step with a checkpoint, as an interruption
    would (the schedule still spans ``cfg.steps``); rerunning resumes there. Resuming with a
    different ``cfg.steps`` stretches the cosine schedule from that point on.
    """
    from tqdm import tqdm

    run = _build_run(cfg)
    start = _resume_or_initialize(run)
    ddp = run.world > 1
    net = torch.nn.parallel.DistributedDataParallel(run.model, find_unused_parameters=True) if ddp else run.model
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    loader = _loader(run, start, end)
    if run.rank == 0:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "config.json").write_text(
            json.dumps({"train": cfg.to_dict(), "model": run.model_cfg.to_dict()}, indent=2) + "\n")
    metrics_path = run.out / "metrics.csv"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (run.device.type == "cuda" and cfg.amp) else None
    run.model.train()
    last: dict = {}
    t_last = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {run.model_cfg.name}", unit="step",
               disable=not progress or run.rank != 0, dynamic_ncols=True)
    step = start
    for batch in loader:
        batch = _to(batch, run.device)
        if run.qat is not None and run.qat.on_step(step, batch) and run.rank == 0:
            _append_csv(metrics_path, {"step": step, "qat_stage": run.qat.stage_at(step)})
        losses, gnorm = _optimizer_step(run, net, batch, step, autocast)
        step += 1
        bar.update(1)
        if run.rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            now = time.perf_counter()
            row = _log_row(run, step, losses, gnorm, (now - t_last) / cfg.log_every)
            t_last = now
            _append_csv(metrics_path, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            last.update(row)
        if step % cfg.ckpt_every == 0 or step == end:
            _save_checkpoint(run.model, run.optimizer, run.scheduler, step, cfg, run.model_cfg, run.ckpt_path,
                             run.rank, run.world, last, run.qat, run.twin)
        if run.rank == 0 and cfg.eval_split and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
            _evaluate_at(run, step, metrics_path, last, progress)
    bar.close()
    if run.rank == 0 and step == cfg.steps:
        plot_curves(metrics_path, run.out / "curves.png",
                    title=f"{run.model_cfg.name} fp32 training (SynthScenes, synthetic data)")
    if ddp:
        dist.barrier()
    return last


def _device(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """``(rank, world size, device)``; joins the process group of a multi-process run."""
    rank, world, local = _dist_info()
    device = torch.device(cfg.device if not cfg.device.startswith("cuda") else f"cuda:{local}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA GPU is available; use --device cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return rank, world, device


def _model_config(cfg: TrainConfig) -> ModelConfig:
    """The config to train: a QAT student has its teacher's architecture, whatever ``nano`` means today."""
    if cfg.qat is not None:
        from ..models_manifest import full_precision_file

        return ModelConfig.from_dict(full_precision_file(cfg.qat.teacher, "teacher")[2]["config"])
    return get_config(cfg.model, **cfg.model_overrides)


def _build_run(cfg: TrainConfig) -> _Run:
    """Model (identical initial weights on every rank), QAT wrapper, loss, optimizer, schedule, data."""
    rank, world, device = _device(cfg)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model_cfg = _model_config(cfg)
    model = BEVDetector(model_cfg).to(device)
    qat = QatRun(cfg.qat, model, cfg.steps, device) if cfg.qat is not None else None
    twin = TwinDistillation(cfg.twin_distill, model_cfg, device) if cfg.twin_distill is not None else None
    criterion = DetectionLoss(model_cfg)
    optimizer = build_optimizer(model, cfg)
    if qat is not None:  # progressive QAT: a warm-up and decay per stage
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: qat.lr_multiplier(s, cfg.warmup_steps, cfg.min_lr_ratio))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
    reader = NuScenesReader(cfg.dataroot, cfg.version, split=cfg.split)
    twin_reader = (NuScenesReader(cfg.twin_distill.twin_dataroot, cfg.version, split=cfg.split)
                   if cfg.twin_distill is not None else None)
    dataset = DetectionDataset(reader, data_config_for(cfg, tuple(model_cfg.image_size)), twin=twin_reader)
    return _Run(cfg=cfg, rank=rank, world=world, device=device, model_cfg=model_cfg, model=model, qat=qat, twin=twin,
                criterion=criterion, optimizer=optimizer, scheduler=scheduler, dataset=dataset)


def _resume_or_initialize(run: _Run) -> int:
    """The step to start from: the checkpoint's (full state restored), else 0 after the warm start
    or the QAT calibration, with this rank's own random stream from there on."""
    cfg, rank = run.cfg, run.rank
    if run.ckpt_path.is_file():
        state = torch.load(run.ckpt_path, map_location="cpu", weights_only=True)
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        start = int(state["step"])
        if rank == 0:
            print(f"resuming {run.out} at step {start}", file=sys.stderr)
        return start
    if cfg.init_from and run.qat is None:
        from .warm_start import warm_start

        info = warm_start(run.model, cfg.init_from)
        if rank == 0:
            print(f"warm start from {info['source']} (sha256 {info['sha256'][:12]})", file=sys.stderr)
    if run.qat is not None:
        _calibrate_qat(run)
    torch.manual_seed(cfg.seed + 1000 * rank)
    return 0


def _calibrate_qat(run: _Run) -> None:
    """Initial quantizer steps from ``calib_batches`` batches spread evenly over the dataset."""
    cfg, qat, dataset = run.cfg, run.qat, run.dataset
    picks = np.linspace(0, len(dataset) - 1, qat.cfg.calib_batches * cfg.batch_size).round().astype(int)
    calib = [_to(collate([dataset[(int(i), cfg.seed + int(i))] for i in picks[j:j + cfg.batch_size]]), run.device)
             for j in range(0, len(picks), cfg.batch_size)]
    info = qat.initialize(calib)
    if run.rank == 0:
        print(f"QAT {qat.cfg.mode} {qat.spec.name}: calibrated {info['weights']} layers", file=sys.stderr)


def _loader(run: _Run, start: int, end: int) -> torch.utils.data.DataLoader:
    """Batches of steps ``start..end`` for this rank (``StepSampler``: exact resume)."""
    cfg = run.cfg
    sampler = StepSampler(len(run.dataset), start, end, cfg.batch_size, run.rank, run.world, cfg.seed)
    return torch.utils.data.DataLoader(
        run.dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate,
        num_workers=cfg.num_workers, persistent_workers=False, prefetch_factor=2 if cfg.num_workers else None,
    )


def _optimizer_step(run: _Run, net: torch.nn.Module, batch: dict, step: int,
                    autocast) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Forward, backward, gradient clipping, optimizer and schedule step; returns the loss terms
    and the gradient norm before clipping. Raises ``TrainingDiverged`` on a non-finite loss or norm."""
    cfg = run.cfg
    if autocast is not None:
        with autocast:
            losses = training_step_losses(net, run.criterion, batch, cfg.temporal, run.qat, run.twin)
    else:
        losses = training_step_losses(net, run.criterion, batch, cfg.temporal, run.qat, run.twin)
    loss = losses["loss"]
    if not torch.isfinite(loss):
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        raise TrainingDiverged(
            f"step {step}: loss is not finite ({terms}); the last good checkpoint is {run.ckpt_path}. "
            "Lower --lr or raise --warmup-steps and resume."
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    if not torch.isfinite(gnorm):
        raise TrainingDiverged(f"step {step}: gradient norm is not finite; the last good checkpoint is {run.ckpt_path}")
    run.optimizer.step()
    run.scheduler.step()
    return losses, gnorm


def _log_row(run: _Run, step: int, losses: dict[str, torch.Tensor], gnorm: torch.Tensor, s_per_step: float) -> dict:
    """One ``metrics.csv`` row: step, learning rate, gradient norm, seconds per step, every loss term."""
    row = {"step": step, "lr": run.optimizer.param_groups[0]["lr"], "grad_norm": float(gnorm),
           "s_per_step": s_per_step}
    row.update({k: float(v.detach()) for k, v in losses.items()})
    return row


def _evaluate_at(run: _Run, step: int, metrics_path: Path, last: dict, progress: bool) -> None:
    """Score the model at ``step`` (rank 0), log NDS / mAP and put them into this step's sidecars."""
    summary = evaluate_model(run.model, run.cfg, run.out / "eval" / f"step_{step:06d}", progress=progress)
    _append_csv(metrics_path, {"step": step, "nds": summary["nd_score"], "map": summary["mean_ap"]})
    last.update({"nds": summary["nd_score"], "map": summary["mean_ap"], "eval_step": step})
    _record_eval_in_sidecars(run.out, step, last)
    run.model.train()


def evaluate_model(model: BEVDetector, cfg: TrainConfig, out_dir: Path, progress: bool = True) -> dict:
    """Score ``model`` on ``cfg.eval_split`` with the official evaluator (temporal, torch engine)."""
    from ..engine import TorchEngine
    from ..predict import predict_and_evaluate

    engine = TorchEngine(model, device=str(next(model.parameters()).device))
    root = cfg.eval_dataroot or cfg.dataroot
    summary = predict_and_evaluate(engine, root, cfg.version, cfg.eval_split, out_dir, progress=progress)
    return summary


def _save_checkpoint(model, optimizer, scheduler, step, cfg, model_cfg, path: Path, rank: int, world: int, last: dict,
                     qat: QatRun | None = None, twin: TwinDistillation | None = None) -> None:
    """Write ``checkpoints/last.pt`` (full state) and ``model.safetensors`` + sidecar.

    At the last step of a QAT run the packed low-bit file is written first: packing rounds the
    model's float tensors to float16 in place, so the checkpoint, the fake-quant weights and
    the packed file all hold the same model.
    """
    rngs = [torch.get_rng_state()]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    if rank != 0:
        return
    meta = {
        "config": model_cfg.to_dict(), "classes": list(CLASS_NAMES), "precision": "fp32", "step": step,
        "train": cfg.to_dict(), "command": cfg.command, "data": {"dataroot": str(cfg.dataroot), "version": cfg.version,
                                                               "split": cfg.split}, "metrics": dict(last),
    }
    if twin is not None:
        meta.update(twin.sidecar())
    if qat is not None:
        meta.update(qat.sidecar())
        if step == cfg.steps:
            qat.pack(Path(cfg.out) / "model.packed.safetensors", {k: v for k, v in meta.items() if k != "precision"})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rngs, "step": step}, tmp)
    tmp.replace(path)
    save_weights(model.state_dict(), Path(cfg.out) / "model.safetensors", meta)


def _record_eval_in_sidecars(out: Path, step: int, last: dict) -> None:
    """Put the scores of the evaluation just run into the sidecars saved at the same ``step``.

    The checkpoint of a step is written before that step's evaluation (a QAT run packs its
    file there, and the evaluation scores the packed-equal weights), so without this the
    sidecar would carry the previous evaluation's NDS next to this step's losses.
    """
    for weights in (out / "model.safetensors", out / "model.packed.safetensors"):
        if not sidecar_path(weights).is_file():
            continue
        side = read_sidecar(weights)
        if side.get("step") == step:
            side["metrics"] = dict(side.get("metrics") or {}, **last)
            write_sidecar(weights, side)


def _append_csv(path: Path, row: dict) -> None:
    """Append a row; the header is the union of keys seen so far (the file is rewritten if it grows)."""
    rows = []
    fields: list[str] = []
    if path.is_file():
        with open(path, newline="") as f:
            r = csv.DictReader(f)
            fields = list(r.fieldnames or [])
            rows = list(r)
    new = [k for k in row if k not in fields]
    if new or not path.is_file():
        fields += new
        rows.append({k: row.get(k, "") for k in fields})
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    else:
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=fields).writerow({k: row.get(k, "") for k in fields})


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(metrics_csv: Path, png: Path, title: str) -> None:
    """Loss terms (log scale) and NDS vs step, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics_csv.is_file():
        return
    rows = read_metrics(metrics_csv)

    def series(key):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "loss_cls", "loss_bbox", "loss_heatmap", "loss_dense_reg"):
        xs, ys = series(key) if rows and key in rows[0] else ([], [])
        if xs:
            ax[0].plot(xs, ys, label=key, lw=1)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    ax[0].set_title("training loss")
    ax[0].legend(fontsize=7)
    xs, ys = series("nds") if rows and "nds" in rows[0] else ([], [])
    xm, ym = series("map") if rows and "map" in rows[0] else ([], [])
    ax[1].plot(xs, ys, "o-", label="NDS")
    ax[1].plot(xm, ym, "s--", label="mAP")
    ax[1].set_xlabel("step")
    ax[1].set_title("val (official nuScenes metrics)")
    ax[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
