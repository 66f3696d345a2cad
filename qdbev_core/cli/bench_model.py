"""Time the model configs on this machine: forward latency of each config and the training
step of nano (forward + loss + backward + AdamW), with parameter counts, GFLOPs and peak RSS.

Inputs are random images with the real nuScenes rig calibration at each config's input size.
Each config runs in its own subprocess so its peak RSS is its own. Prints a table and writes
JSON (--json). This is a benchmark command, not a test: numbers depend on the machine and load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configs", default="nano,tiny,small,base", help="comma-separated config names")
    p.add_argument("--repeats", type=int, default=5, help="timed forward passes per config (nano: 4x more)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--train-steps", type=int, default=10, help="timed nano training steps (0 = skip)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, default=Path("out/bench_model.json"), help="where to write the results")
    p.add_argument("--_one", default=None, help=argparse.SUPPRESS)


def _measure(name: str, repeats: int, threads: int, train_steps: int, device: str) -> dict:
    import resource
    import time

    import numpy as np
    import torch

    from ..data.rig import rig_arrays, scaled_intrinsics
    from ..model import BEVDetector, DetectionLoss, get_config
    from ..model.flops import count_flops

    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA GPU is available")
    cfg = get_config(name)
    h, w = cfg.image_size
    k, t = rig_arrays(1.0)
    k = np.stack([scaled_intrinsics(ki, w / 1600, h / 900) for ki in k])
    dev = torch.device(device)
    torch.manual_seed(0)
    model = BEVDetector(cfg).to(dev).eval()
    img = torch.randn(1, 6, 3, h, w, device=dev)
    kk = torch.tensor(k, dtype=torch.float32, device=dev)[None]
    tt = torch.tensor(t, dtype=torch.float32, device=dev)[None]
    n = repeats * (4 if name == "nano" else 1)
    times = []
    with torch.no_grad():
        model(img, kk, tt)  # warm-up
        for _ in range(n):
            t0 = time.perf_counter()
            model(img, kk, tt)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
    row = {
        "config": name, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops": count_flops(cfg) / 1e9, "input": f"6x{h}x{w}", "bev": f"{cfg.bev_h}x{cfg.bev_w}",
        "forward_ms_median": float(np.median(times)), "forward_ms_p90": float(np.percentile(times, 90)),
    }
    if name == "nano" and train_steps > 0:
        model.train()
        crit = DetectionLoss(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        targets = [{"boxes": torch.tensor(np.c_[rng.uniform(-40, 40, (20, 2)), np.full((20, 1), 0.8),
                                                np.full((20, 3), [4.5, 1.9, 1.6]), rng.uniform(-3, 3, (20, 1)),
                                                np.zeros((20, 2))], dtype=torch.float32, device=dev),
                    "labels": torch.zeros(20, dtype=torch.long, device=dev)}]
        steps = []
        for i in range(train_steps + 1):
            t0 = time.perf_counter()
            loss = crit(model(img, kk, tt), targets)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # first step is warm-up
                steps.append((time.perf_counter() - t0) * 1e3)
        row["train_step_ms_median"] = float(np.median(steps))
    row["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def run(args: argparse.Namespace) -> int:
    if args._one:
        print(json.dumps(_measure(args._one, args.repeats, args.threads, args.train_steps, args.device)))
        return 0
    from tqdm import tqdm

    rows = []
    for name in tqdm(args.configs.split(","), desc="bench-model", unit="config"):
        cmd = [sys.executable, "-m", "qdbev_core", "bench-model", "--_one", name, "--repeats", str(args.repeats),
               "--threads", str(args.threads), "--train-steps", str(args.train_steps), "--device", args.device]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"config {name} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    import platform

    import torch

    header = (f"model configs on {platform.processor() or platform.machine()}, {args.threads} threads, "
              f"device {args.device}, torch {torch.__version__} (random inputs)")
    print(header)
    print(f"{'config':<7}{'params M':>9}{'GFLOPs':>8}{'input':>12}{'BEV':>9}{'fwd ms p50':>12}{'fwd ms p90':>12}"
          f"{'train step ms':>15}{'peak RSS MB':>13}")
    for r in rows:
        step = f"{r['train_step_ms_median']:.0f}" if "train_step_ms_median" in r else "-"
        print(f"{r['config']:<7}{r['params_M']:9.2f}{r['gflops']:8.1f}{r['input']:>12}{r['bev']:>9}"
              f"{r['forward_ms_median']:12.0f}{r['forward_ms_p90']:12.0f}{step:>15}{r['peak_rss_MB']:13.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"title": header, "rows": rows}, indent=2) + "\n")
    print(args.json)
    return 0
