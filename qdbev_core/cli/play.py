"""Publish a rosbag2's messages on live ROS 2 topics at the recorded rate (for machines without `ros2 bag`).

Needs rclpy (a ROS install or the PyPI ROS 2 wheels); the bag is read with `rosbags` and each
message is published as its stored serialized bytes. Message stamps are not rewritten. Use
--wait-for-subscribers with qdbev_node: it republishes the bag's first /tf_static and CameraInfo
until the node subscribes to the images, so no camera set is lost while it starts. Set
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, ROS_DOMAIN_ID and FASTDDS_DEFAULT_PROFILES_FILE=
config/fastdds_shm.xml as for the node. With --pace-topic /qdbev_node/detections the player waits
for the node's output of each camera set before publishing the next one (no set is dropped
however slow inference is; live results then equal `qdbev replay`'s). Also runnable as
`python -m qdbev_ros.play`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 folder (MCAP or sqlite3)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed relative to recorded time (> 0)")
    parser.add_argument("--loop", action="store_true", help="start again at the end until Ctrl-C")
    parser.add_argument("--topics", nargs="+", default=None, help="only these topics (omitted: every topic)")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for a subscriber on every image topic, "
                             "republishing /tf_static and CameraInfo meanwhile (0 = start at once)")
    parser.add_argument("--pace-topic", default=None, metavar="TOPIC",
                        help="closed-loop pacing: publish camera set k+1 only after a message on TOPIC "
                             "(vision_msgs/Detection3DArray, e.g. /qdbev_node/detections) stamped within set k; "
                             "also waits for the last set's output before exiting")
    parser.add_argument("--pace-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="with --pace-topic: go on after waiting this long for one set's output")


def run(args: argparse.Namespace) -> int:
    try:
        from qdbev_ros.play import run_player
    except ImportError as exc:
        raise ValueError(f"`qdbev play` needs rclpy (a ROS 2 install or the ROS 2 wheels, see README): {exc}") from exc
    return run_player(args)
