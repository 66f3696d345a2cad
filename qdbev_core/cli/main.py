"""``qdbev <verb> [options]``: entry point of the offline tooling.

Every verb lives in its own module of this package and exposes ``add_arguments(parser)`` and
``run(args) -> int``. The verbs that need rclpy (``play``, ``bag record``) live in ``qdbev_ros.cli``,
which adds them to this parser: the ``qdbev`` command is ``qdbev_ros.cli:main`` (core verbs + ROS
verbs), ``python -m qdbev_core`` has the core verbs only, and nothing here imports ROS. Modules keep heavy imports (torch, the nuScenes devkit) inside ``run`` so
``qdbev --help`` stays fast. Failures print one line ``qdbev <verb>: error: ...`` on stderr and
exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from . import bench, bench_model, data_check, eval_cmd, export, gt_results, models, predict, qat, synth, train, viz
from . import bag, experiment, pack, replay, size, unpack


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


@dataclass(frozen=True)
class Verb:
    """A verb another package adds: ``module`` has ``add_arguments(parser)`` and ``run(args)``;
    ``parent`` names a verb with sub-commands it joins (``"bag"``: ``qdbev bag <name>``)."""

    name: str
    module: ModuleType
    help: str
    parent: str | None = None


def _verbs() -> list[tuple[str, ModuleType, str]]:
    return [
        ("synth", synth, "generate a SynthScenes dataset in the nuScenes on-disk format"),
        ("data", data_check, "inspect and validate a nuScenes-format dataroot"),
        ("eval", eval_cmd, "score a nuScenes results JSON with the official devkit"),
        ("gt-results", gt_results, "write a split's ground truth as a results JSON (oracle / evaluator check)"),
        ("models", models, "list the bundled models or the model configs"),
        ("train", train, "train a full-precision detector"),
        ("qat", qat, "quantization-aware training (standard / progressive / QD-BEV with view-guided distillation)"),
        ("predict", predict, "run a model over a split and write a nuScenes results JSON"),
        ("bench-model", bench_model, "time forward passes of the model configs and a nano training step"),
        ("pack", pack, "write a QAT checkpoint as a real low-bit file (integers on disk)"),
        ("unpack", unpack, "rebuild the fake-quant model of a packed low-bit file as a checkpoint"),
        ("size", size, "fp32 vs packed size on disk of a model, and the ratio"),
        ("export", export, "export a model to ONNX (fp32, or Q/DQ INT8 from a quantized model)"),
        ("bench", bench, "benchmark the inference backends side by side (latency, FPS, RSS, size, NDS)"),
        ("viz", viz, "render BEV and camera pictures of GT and predictions"),
        ("bag", bag, "rosbag2 tools: write a nuScenes scene as a bag, show a bag's contents"),
        ("replay", replay, "run a bag through the node's frame assembly + an engine offline; output bag + NDS"),
        ("experiment", experiment, "reproduce the paper's claims on our data (paper-table, vgd-balance)"),
    ]


def build_parser(extra: Sequence[Verb] = ()) -> argparse.ArgumentParser:
    """The ``qdbev`` parser: the core verbs plus ``extra`` (verbs or sub-commands of other packages)."""
    parser = argparse.ArgumentParser(
        prog="qdbev",
        description="qdbev: quantized multi-camera BEV 3D detection — data, training, evaluation, export.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    children: dict[str, argparse._SubParsersAction] = {}
    verbs = [Verb(n, m, h) for n, m, h in _verbs()] + [v for v in extra if v.parent is None]
    for v in verbs:
        p = sub.add_parser(v.name, help=v.help, description=(v.module.__doc__ or v.help).strip(),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        nested = v.module.add_arguments(p)  # a verb with sub-commands returns their subparsers action
        if nested is not None:
            children[v.name] = nested
        p.set_defaults(_run=v.module.run)
    for v in (v for v in extra if v.parent is not None):
        if v.parent not in children:
            raise ValueError(f"verb {v.parent!r} has no sub-commands to add {v.name!r} to")
        p = children[v.parent].add_parser(v.name, help=v.help, description=(v.module.__doc__ or v.help).strip(),
                                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        v.module.add_arguments(p)
        p.set_defaults(_run=v.module.run)  # the sub-command's defaults win over its parent verb's
    return parser


def main(argv: list[str] | None = None, extra: Sequence[Verb] = ()) -> int:
    """Run one verb; ``extra``: verbs of other packages (``qdbev_ros.cli.main`` passes the ROS ones)."""
    parser = build_parser(extra)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CliError, FileNotFoundError, ValueError) as exc:
        print(f"qdbev {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qdbev {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
