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
    image_transport   [compressed]  `qdbev bag from-nuscenes` writes JPEG CompressedImage by default

The node subscribes to the images only once it has every camera's CameraInfo and TF, which
`ros2 bag play` publishes together with the first images: the first camera set of the bag is
spent calibrating the node and yields no detections. `qdbev play --wait-for-subscribers 30`
(no ros2 bag needed) republishes the calibration until the node is subscribed and loses nothing;
`qdbev replay` (offline) behaves like the latter.

`ros2 bag play` republishes /tf_static with the transient-local QoS recorded in the bag.
"""

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction, RegisterEventHandler, TimerAction)
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessIO
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

READY_MARKER = "ready; waiting for CameraInfo"
"""What qdbev_node logs once its engine is loaded and it subscribes to CameraInfo (qdbev_ros/node.py)."""


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
        DeclareLaunchArgument("model", default_value="nano-w4a6-qdbev",
                              description="model name in models/manifest.yaml or a .safetensors path"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", description="torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("camera_namespace", default_value="/cameras",
                              description="prefix of the camera topics in the bag"),
        DeclareLaunchArgument("image_transport", default_value="compressed",
                              description="raw | compressed: the image type the bag holds"),
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
        detector,
        TimerAction(period=LaunchConfiguration("start_delay"), actions=[OpaqueFunction(function=play.on_timeout)]),
    ])
