"""qdbev_core must import without rclpy or any ROS message package (docs/DESIGN.md §1)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil, sys

class Block:
    # refuse rclpy, every *_msgs package and qdbev_ros, as on a machine without ROS
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ("rclpy", "qdbev_ros", "message_filters", "tf2_ros", "launch", "launch_ros") or top.endswith("_msgs"):
            raise ImportError(f"blocked ROS module {name}")
        return None

sys.meta_path.insert(0, Block())
import qdbev_core
names = [m.name for m in pkgutil.walk_packages(qdbev_core.__path__, "qdbev_core.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_core_module_imports_without_ros() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 50


def test_no_core_module_imports_ros_even_lazily() -> None:
    """Not only at import time: no function in qdbev_core imports rclpy, qdbev_ros or a message package
    (the verbs that need ROS live in qdbev_ros.cli, which builds on the core's parser)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "qdbev_core"
    bad = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for n in names:
                top = n.split(".")[0]
                if top in ("rclpy", "qdbev_ros", "message_filters", "tf2_ros") or top.endswith("_msgs"):
                    bad.append(f"{path.relative_to(root.parent)}:{node.lineno} imports {n}")
    assert not bad, bad


def test_qdbev_command_has_the_ros_verbs_on_top_of_the_core_ones() -> None:
    from qdbev_core.cli.main import build_parser
    from qdbev_ros.cli import ROS_VERBS

    core = build_parser()
    full = build_parser(ROS_VERBS)
    assert full.parse_args(["play", "some_bag", "--rate", "2"]).rate == 2.0
    args = full.parse_args(["bag", "record", "--out", "x"])
    assert args._run.__name__ == "run_record" and str(args.out) == "x"
    assert full.parse_args(["bag", "info", "b"])._bag_run.__name__ == "_info"  # the core's sub-commands stay
    import pytest

    with pytest.raises(SystemExit):
        core.parse_args(["play", "some_bag"])
