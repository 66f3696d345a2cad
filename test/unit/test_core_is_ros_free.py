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
