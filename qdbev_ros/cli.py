"""The ``qdbev`` command: the core verbs (``qdbev_core.cli``) plus the ones that need rclpy.

``qdbev play BAG``: publish a rosbag2's messages on live ROS 2 topics at the recorded rate (for
machines without ``ros2 bag``); ``qdbev bag record --out BAG``: record live topics into an MCAP bag.
Both import rclpy only when they run, so every other verb works without ROS. ``python -m
qdbev_ros`` is the same command; ``python -m qdbev_core`` has the core verbs only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

from qdbev_core.cli.main import Verb
from qdbev_core.cli.main import main as core_main


def add_play_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qdbev play`` (also ``python -m qdbev_ros.play``)."""
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


def run_play(args: argparse.Namespace) -> int:
    """``qdbev play``: see ``qdbev_ros.play``. Set ROS_AUTOMATIC_DISCOVERY_RANGE, ROS_DOMAIN_ID and
    FASTDDS_DEFAULT_PROFILES_FILE as for the node; ``--pace-topic /qdbev_node/detections`` drops no set."""
    try:
        from .play import run_player
    except ImportError as exc:
        raise ValueError(f"`qdbev play` needs rclpy (a ROS 2 install or the ROS 2 wheels, see README): {exc}") from exc
    return run_player(args)


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qdbev bag record``."""
    parser.add_argument("--out", type=Path, required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--topics", nargs="+", default=None,
                        help="topics to record (default: /qdbev_node/detections, /qdbev_node/detections/velocity, "
                             "/qdbev_node/debug/pipeline_latency_ms, /diagnostics)")
    parser.add_argument("--wait-for-publishers", type=float, default=60.0, metavar="SECONDS",
                        help="wait this long for a publisher on every topic (their types come from discovery)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="write this file once every subscription is matched (scripts wait for it)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this long (default: until Ctrl-C / SIGTERM)")


def run_record(args: argparse.Namespace) -> int:
    """``qdbev bag record``: see ``qdbev_ros.record``."""
    try:
        from .record import run_recorder
    except ImportError as exc:
        raise ValueError(f"`qdbev bag record` needs rclpy (a ROS 2 install or the ROS 2 wheels): {exc}") from exc
    try:
        return run_recorder(args)
    except (FileExistsError, TimeoutError) as exc:
        raise ValueError(str(exc)) from exc


PLAY = SimpleNamespace(__doc__="Publish a rosbag2's messages on live ROS 2 topics at the recorded rate "
                               "(needs rclpy). " + (run_play.__doc__ or ""),
                       add_arguments=add_play_arguments, run=run_play)
RECORD = SimpleNamespace(__doc__="Record live topics into an MCAP bag (needs rclpy). " + (run_record.__doc__ or ""),
                         add_arguments=add_record_arguments, run=run_record)
ROS_VERBS = (
    Verb("play", PLAY, "publish a bag's messages on live ROS 2 topics at the recorded rate (needs rclpy)"),
    Verb("record", RECORD, "record live topics into an MCAP bag (needs rclpy)", parent="bag"),
)


def main(argv: list[str] | None = None) -> int:
    """The ``qdbev`` console script: core verbs + ``play`` and ``bag record``."""
    return core_main(argv, extra=ROS_VERBS)


if __name__ == "__main__":
    sys.exit(main())
