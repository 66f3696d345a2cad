"""The ``qdbev`` command: the core verbs (``qdbev_core.cli``) plus the ones that need rclpy.

``qdbev play BAG``: publish a rosbag2's messages on live ROS 2 topics at the recorded rate (for
machines without ``ros2 bag``); ``qdbev bag record --out BAG``: record live topics into an MCAP bag.
Both import rclpy only when they run, so every other verb works without ROS. ``python -m
qdbev_ros`` is the same command; ``python -m qdbev_core`` has the core verbs only.
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

from qdbev_core.cli.main import Verb
from qdbev_core.cli.main import main as core_main

from .verb_args import add_play_arguments, add_record_arguments


def run_play(args: argparse.Namespace) -> int:
    """``qdbev play``: see ``qdbev_ros.play``. Set ROS_AUTOMATIC_DISCOVERY_RANGE, ROS_DOMAIN_ID and
    FASTDDS_DEFAULT_PROFILES_FILE as for the node; ``--pace-topic /qdbev_node/detections`` drops no set."""
    try:
        from .play import run_player
    except ImportError as exc:
        raise ValueError(f"`qdbev play` needs rclpy (a ROS 2 install or the ROS 2 wheels, see README): {exc}") from exc
    return run_player(args)


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
