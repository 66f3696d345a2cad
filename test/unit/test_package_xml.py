"""package.xml lists every ROS package the node and the launch files import, so `rosdep install`
and a colcon workspace bring in everything `ros2 run qdbev qdbev_node` needs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# ROS packages imported without a `.msg` / `.srv` sub-module
_ROS_PLAIN = {"rclpy", "tf2_ros", "message_filters", "cv_bridge", "launch", "launch_ros", "ament_index_python"}


def _imported_ros_packages(files: list[Path]) -> dict[str, str]:
    found: dict[str, str] = {}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in _ROS_PLAIN or (len(parts) > 1 and parts[1] in ("msg", "srv", "action")):
                    found.setdefault(parts[0], f"{f.relative_to(REPO)}:{node.lineno}")
    return found


def test_every_imported_ros_package_is_an_exec_depend() -> None:
    xml = (REPO / "package.xml").read_text()
    deps = set(re.findall(r"<(?:exec_)?depend>\s*([^<\s]+)\s*</(?:exec_)?depend>", xml))
    files = sorted((REPO / "qdbev_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))
    imported = _imported_ros_packages(files)
    assert {"rclpy", "vision_msgs", "sensor_msgs", "qdbev_msgs"} <= set(imported), imported  # the scan works
    missing = {pkg: where for pkg, where in imported.items() if pkg not in deps}
    assert not missing, f"imported but not in package.xml <exec_depend>: {missing}"
