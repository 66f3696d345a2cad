"""Write the ground truth of a split as a nuScenes results JSON (the evaluation oracle).

Every annotated box of the split that the evaluator scores (a detection class, > 0 lidar+radar
points) becomes a detection with score 1.0, its ground-truth attribute and velocity, converted
through the same reader -> ResultsWriter path a model's output takes. Scored with ``qdbev eval``
it gives NDS = mAP = 1.0; ``--jitter-m`` moves every box centre by that many metres in a random
horizontal direction (seeded) to produce a measurably worse submission.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataroot", required=True, help="dataset folder holding <version>/")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder")
    parser.add_argument("--split", required=True, help="built-in devkit split or a name from splits.json")
    parser.add_argument("--out", required=True, help="results JSON to write")
    parser.add_argument("--jitter-m", type=float, default=0.0,
                        help="move each box centre by this distance in metres, random horizontal direction")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the jitter directions")
    parser.add_argument("--include-empty", action="store_true",
                        help="also write GT boxes with 0 lidar+radar points (the evaluator ignores them as GT, "
                             "so they count as false positives)")


def write_gt_results(dataroot, version: str, split: str, out, jitter_m: float = 0.0, seed: int = 0,
                     include_empty: bool = False) -> int:
    """Write the split's GT as results to ``out``; returns the number of boxes written."""
    import numpy as np

    from ..data.reader import NuScenesReader
    from ..eval.results import ResultsWriter
    from ..types import Detections

    if jitter_m < 0:
        raise ValueError(f"--jitter-m must be >= 0, got {jitter_m}")
    rng = np.random.default_rng(seed)
    reader = NuScenesReader(dataroot, version, split=split, load_images=False)
    writer = ResultsWriter(reader.sample_tokens)
    for tok in reader.sample_tokens:
        gt = reader.ground_truth(tok)
        t = reader.ego2global(tok)
        keep = np.ones(len(gt["labels"]), dtype=bool) if include_empty else gt["num_pts"] > 0
        boxes = gt["boxes"][keep].copy()
        if jitter_m > 0 and len(boxes):
            ang = rng.uniform(0.0, 2.0 * np.pi, size=len(boxes))
            boxes[:, 0] += jitter_m * np.cos(ang)
            boxes[:, 1] += jitter_m * np.sin(ang)
        dets = Detections(boxes=boxes, scores=np.ones(len(boxes)), labels=gt["labels"][keep])
        writer.add(tok, dets, t, attributes=[a for a, k in zip(gt["attributes"], keep) if k])
    writer.write(out)
    return writer.num_boxes


def run(args: argparse.Namespace) -> int:
    n = write_gt_results(args.dataroot, args.version, args.split, args.out, args.jitter_m, args.seed,
                         args.include_empty)
    print(f"wrote {n} ground-truth boxes of split {args.split} to {args.out}", file=sys.stderr)
    return 0
