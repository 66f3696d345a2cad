"""Inspect and validate a nuScenes-format dataroot.

``qdbev data check --dataroot D --version V [--split S]`` checks that the 13 tables are present
and parseable, every key-frame image / LIDAR_TOP file exists, calibration is sane, each sample has
six camera key frames and a LIDAR_TOP key frame with an ego pose; prints scenes/samples per split
and GT boxes per class. Exit code 0 when the dataset is usable, 1 with a list of problems.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_action", metavar="<action>", required=True)
    p = sub.add_parser(
        "check", help="validate tables, files and calibration; print split and class counts",
        description=__doc__.strip(), formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataroot", required=True,
                   help="dataset folder holding <version>/ (the 13 JSON tables), samples/, sweeps/, maps/")
    p.add_argument("--version", default="v1.0-mini", help="nuScenes version folder, e.g. v1.0-mini, v1.0-trainval")
    p.add_argument("--split", default=None,
                   help="count GT per class over this split only (built-in devkit split or a name from "
                        "<dataroot>/<version>/splits.json); default: all samples")
    p.add_argument("--no-files", action="store_true",
                   help="skip the (slow on full nuScenes) image/lidar/map file existence checks")


def run(args: argparse.Namespace) -> int:
    from ..data.check import check_dataroot

    if args.data_action != "check":  # pragma: no cover - argparse restricts the choices
        raise ValueError(f"unknown action {args.data_action!r}")
    report = check_dataroot(args.dataroot, args.version, split=args.split, check_files=not args.no_files)
    print(report.format())
    return 0 if report.ok else 1
