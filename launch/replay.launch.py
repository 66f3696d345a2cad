"""Play a rosbag2 into qdbev_node with `ros2 bag play`, and show the result in RViz.

    ros2 launch qdbev replay.launch.py bag:=out/demo/scene.bag
    ros2 launch qdbev replay.launch.py bag:=my.bag image_transport:=raw rate:=0.5 loop:=true

Arguments (defaults in brackets):
    bag               (required)    rosbag2 folder, e.g. from `qdbev bag from-nuscenes`
    rate              [1.0]         playback speed
    loop              [false]       replay the bag until stopped (the node resets its temporal state)
    start_delay       [120.0]       playing starts when the node logs that its engine is ready and it
                                    waits for CameraInfo (7-20 s on a loaded 2-core machine); after
                                    this many seconds without that line it starts anyway (a warning)
    model, backend, camera_namespace, params_file, namespace, use_rviz, fastdds_profile: as qdbev.launch.py
                                    (model, backend, camera_namespace: empty = params_file's; described
                                    by the node parameters' own descriptions, launch_argument_description)
    image_transport   [auto]        auto: what the bag holds, read from its metadata.yaml (camera topics
                                    .../image_raw/compressed -> compressed, .../image_raw -> raw), so a
                                    bag of `qdbev bag from-nuscenes` (JPEG CompressedImage by default,
                                    raw with --raw) reaches the node; raw | compressed: that; empty:
                                    params_file's

The node subscribes to the images only once it has every camera's CameraInfo and TF, which
`ros2 bag play` publishes together with the first images: the first camera set of the bag is
spent calibrating the node and yields no detections. `qdbev play --wait-for-subscribers 30`
(no ros2 bag needed) republishes the calibration until the node is subscribed and loses nothing;
`qdbev replay` (offline) behaves like the latter.

`ros2 bag play` republishes /tf_static with the transient-local QoS recorded in the bag.
"""

import os

import yaml
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction, RegisterEventHandler, SetLaunchConfiguration, TimerAction)
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessIO
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare
from qdbev_core.runtime.node_parameters import launch_argument_description

READY_MARKER = "ready; waiting for CameraInfo"
"""What qdbev_node logs once its engine is loaded and it subscribes to CameraInfo (qdbev_ros/node.py)."""


AUTO_TRANSPORT = "auto"
"""``image_transport:=auto`` (the default): the transport the bag's camera topics use."""

NODE_ARGUMENTS = ("model", "backend", "camera_namespace")
"""Launch arguments forwarded to qdbev.launch.py with an empty default (the params file decides);
``image_transport`` is forwarded too, with the default ``auto``."""

_IMAGE_TYPES = {"sensor_msgs/msg/CompressedImage": ("compressed", "/image_raw/compressed"),
                "sensor_msgs/msg/Image": ("raw", "/image_raw")}


def bag_image_transport(bag: str, camera_namespace: str = "") -> tuple[str | None, str]:
    """The node's ``image_transport`` for a rosbag2 folder: ``(transport or None, reason)``.

    Reads ``<bag>/metadata.yaml`` (the folder's, or the folder holding ``bag`` if it is a file)
    and looks at the image topics ``<ns>/<CAM>/image_raw`` (``sensor_msgs/Image``) and
    ``<ns>/<CAM>/image_raw/compressed`` (``sensor_msgs/CompressedImage``), under
    ``camera_namespace`` when it is not empty. ``None`` when the bag has neither or both kinds.
    """
    if not os.path.exists(bag):
        return None, f"bag {bag!r} does not exist"
    folder = bag if os.path.isdir(bag) else os.path.dirname(bag) or "."
    path = os.path.join(folder, "metadata.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            info = (yaml.safe_load(f) or {}).get("rosbag2_bagfile_information", {})
    except (OSError, yaml.YAMLError) as exc:
        return None, f"cannot read {path}: {exc}"
    prefix = camera_namespace.rstrip("/") + "/" if camera_namespace else "/"
    found: dict[str, list[str]] = {}
    for entry in info.get("topics_with_message_count") or []:
        meta = (entry or {}).get("topic_metadata") or {}
        name, kind = str(meta.get("name", "")), _IMAGE_TYPES.get(str(meta.get("type", "")))
        if kind is not None and name.startswith(prefix) and name.endswith(kind[1]):
            found.setdefault(kind[0], []).append(name)
    if len(found) != 1:
        what = ("no camera image topics" if not found else
                "both raw and compressed camera image topics")
        return None, f"{bag} has {what} (<ns>/<CAM>/image_raw[/compressed]{' under ' + prefix if camera_namespace else ''})"
    (transport, topics), = found.items()
    return transport, f"{bag}: {len(topics)} camera topics {topics[0]}, ... -> image_transport {transport}"


def _resolve_image_transport(context) -> list:
    """OpaqueFunction: ``image_transport:=auto`` becomes the bag's transport (or empty: params_file)."""
    value = LaunchConfiguration("image_transport").perform(context)
    if value != AUTO_TRANSPORT:
        return []
    transport, reason = bag_image_transport(LaunchConfiguration("bag").perform(context),
                                            LaunchConfiguration("camera_namespace").perform(context))
    if transport is None:
        return [LogInfo(msg=f"image_transport:=auto: {reason}; using params_file's image_transport"),
                SetLaunchConfiguration("image_transport", "")]
    return [LogInfo(msg=f"image_transport:=auto: {reason}"), SetLaunchConfiguration("image_transport", transport)]


class PlayOnce:
    """Hands out the play actions once: on the node's ready line, or when ``start_delay`` ran out."""

    def __init__(self, actions: list) -> None:
        self.actions = actions
        self.started = False

    def on_output(self, event) -> list | None:
        """``OnProcessIO`` handler: the play actions the first time a process logs ``READY_MARKER``."""
        if self.started or READY_MARKER not in event.text.decode(errors="replace"):
            return None
        self.started = True
        return self.actions

    def on_timeout(self, context) -> list:  # noqa: ARG002 - OpaqueFunction signature
        """``start_delay`` passed without the ready line: play anyway, with a warning."""
        if self.started:
            return []
        self.started = True
        return [LogInfo(msg=f"qdbev_node did not log '{READY_MARKER}' within start_delay: playing the bag anyway "
                            "(the first camera sets may be lost)"), *self.actions]


def generate_launch_description():
    share = FindPackageShare("qdbev")
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
        DeclareLaunchArgument("loop", default_value="false", description="loop the bag"),
        DeclareLaunchArgument("start_delay", default_value="120.0",
                              description="longest wait for the node's ready line before playing anyway, seconds"),
        *(DeclareLaunchArgument(name, default_value="", description=launch_argument_description(name))
          for name in NODE_ARGUMENTS),
        DeclareLaunchArgument("image_transport", default_value=AUTO_TRANSPORT,
                              description=launch_argument_description(
                                  "image_transport", "params_file's value. auto (the default): what the bag "
                                  "holds, from its metadata.yaml")),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "qdbev.yaml"]),
                              description="node parameters file"),
        DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of the node"),
        DeclareLaunchArgument("use_rviz", default_value="true",
                              description="start RViz with config/qdbev.rviz (skipped, with a message, without rviz2)"),
        DeclareLaunchArgument("fastdds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
                              description="FASTDDS_DEFAULT_PROFILES_FILE for the processes started here"),
    ]
    detector = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "qdbev.launch.py"])),
        launch_arguments={
            "model": LaunchConfiguration("model"),
            "backend": LaunchConfiguration("backend"),
            "camera_namespace": LaunchConfiguration("camera_namespace"),
            "image_transport": LaunchConfiguration("image_transport"),
            "params_file": LaunchConfiguration("params_file"),
            "namespace": LaunchConfiguration("namespace"),
            "use_rviz": LaunchConfiguration("use_rviz"),
            "fastdds_profile": LaunchConfiguration("fastdds_profile"),
        }.items(),
    )
    play_once = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate")],
        output="screen",
        condition=UnlessCondition(LaunchConfiguration("loop")),
    )
    play_loop = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate"), "--loop"],
        output="screen",
        condition=IfCondition(LaunchConfiguration("loop")),
    )
    play = PlayOnce([play_once, play_loop])
    return LaunchDescription(args + [
        RegisterEventHandler(OnProcessIO(on_stdout=play.on_output, on_stderr=play.on_output)),
        OpaqueFunction(function=_resolve_image_transport),  # before the include reads image_transport
        detector,
        TimerAction(period=LaunchConfiguration("start_delay"), actions=[OpaqueFunction(function=play.on_timeout)]),
    ])
