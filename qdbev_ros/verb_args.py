"""Command-line options of ``qdbev play`` and ``qdbev bag record`` (shared by ``qdbev_ros.cli`` and the
``python -m qdbev_ros.play`` entry point; argparse only, so importing it needs no rclpy)."""

from __future__ import annotations

import argparse
from pathlib import Path


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
