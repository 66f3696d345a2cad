"""Score a nuScenes detection results JSON with the official devkit evaluator.

Runs ``nuscenes.eval.detection.evaluate.DetectionEval`` (config ``detection_cvpr_2019``) on the
given split, writes the devkit's metrics_summary.json / metrics_details.json into --output-dir and
prints mAP, NDS, the five true-positive errors (mATE m, mASE 1-IoU, mAOE rad, mAVE m/s, mAAE
1-acc) and per-class AP / errors on stdout. Devkit progress goes to stderr with --verbose.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results JSON (nuScenes detection submission format)")
    parser.add_argument("--dataroot", required=True, help="dataset folder holding <version>/ and maps/")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder")
    parser.add_argument("--split", required=True,
                        help="split to score: built-in (mini_val, val, ...) or a name from <dataroot>/<version>/splits.json")
    parser.add_argument("--output-dir", required=True, help="folder for metrics_summary.json (created)")
    parser.add_argument("--plots", action="store_true", help="also render the devkit's PR/TP curves (PDF, slow)")
    parser.add_argument("--heading", action="store_true",
                        help="also print (and write heading_breakdown.json) the share of matched boxes per class whose "
                             "yaw is aligned / across (45-135 deg) / flipped, static vs moving, with their speeds")
    parser.add_argument("--verbose", action="store_true", help="show the devkit's own progress output on stderr")


def run(args: argparse.Namespace) -> int:
    from ..eval.nuscenes_eval import evaluate, format_summary

    summary = evaluate(args.results, args.dataroot, args.version, args.split, args.output_dir,
                       verbose=args.verbose, render_curves=args.plots, heading=args.heading)
    print(format_summary(summary))
    if args.heading:
        from ..eval.heading import format_breakdown

        print("\nheading of matched boxes (score >= 0.3, same class, centre within 2 m):")
        print(format_breakdown(summary["heading_breakdown"]))
    return 0
