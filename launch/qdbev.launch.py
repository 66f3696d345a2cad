"""Start qdbev_node (and optionally RViz) on a ROS 2 install.

    ros2 launch qdbev qdbev.launch.py use_rviz:=true                     # the bundled QD-BEV W4A6 model, int8
    ros2 launch qdbev qdbev.launch.py model:=nano-fp32 backend:=torch     # its fp32 teacher in PyTorch

Arguments (defaults in brackets):
    model             [nano-w4a6-qdbev]  name in models/manifest.yaml or a .safetensors path
    backend           [onnxruntime] torch | onnxruntime | tensorrt (onnxruntime: int8 Q/DQ graph of a
                                    quantized model, exported once into models/engines/)
    camera_namespace  [/cameras]    topics <ns>/<CAM>/image_raw[/compressed], <ns>/<CAM>/camera_info
    image_transport   [raw]         raw (sensor_msgs/Image) | compressed (sensor_msgs/CompressedImage)
    params_file       [<share/qdbev>/config/qdbev.yaml]  every other node parameter
    namespace         ['']          ROS namespace of the node (its topics become /<ns>/qdbev_node/...)
    use_rviz          [false]       also start RViz with config/qdbev.rviz; where rviz2 is not installed
                                    the launch says so and starts the node without it
    fastdds_profile   [<share/qdbev>/config/fastdds_shm.xml]  Fast DDS profile (128 MiB SHM segment for
                                    camera-sized messages); `keep` keeps the environment's
                                    FASTDDS_DEFAULT_PROFILES_FILE (launch rejects an empty `name:=`)

The arguments given here override the same parameters of params_file. Traffic stays on this
host when ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set in the environment (tests and the demo
do). test/unit/test_launch_files.py checks these names against the node's declared parameters.
"""

import shutil

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

KEEP_PROFILE = "keep"
"""``fastdds_profile:=keep``: leave FASTDDS_DEFAULT_PROFILES_FILE as the environment has it."""


def rviz2_installed() -> bool:
    """True when rviz2 can be started (on PATH or in the ament index)."""
    if shutil.which("rviz2"):
        return True
    try:
        from ament_index_python.packages import get_package_prefix

        get_package_prefix("rviz2")
    except Exception:  # noqa: BLE001 - not installed / no ament index
        return False
    return True


def generate_launch_description():
    share = FindPackageShare("qdbev")
    args = [
        DeclareLaunchArgument("model", default_value="nano-w4a6-qdbev",
                              description="model name in models/manifest.yaml or a .safetensors path"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", description="torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("camera_namespace", default_value="/cameras",
                              description="prefix of <ns>/<CAM>/image_raw[/compressed] and <ns>/<CAM>/camera_info"),
        DeclareLaunchArgument("image_transport", default_value="raw",
                              description="raw (sensor_msgs/Image) | compressed (sensor_msgs/CompressedImage)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "qdbev.yaml"]),
                              description="node parameters file"),
        DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of the node"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz with config/qdbev.rviz"),
        DeclareLaunchArgument("fastdds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
                              description="FASTDDS_DEFAULT_PROFILES_FILE for the processes started here; "
                                          "'keep' keeps the environment's"),
    ]
    have_rviz = rviz2_installed()
    node = Node(
        package="qdbev",
        executable="qdbev_node",
        name="qdbev_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model": LaunchConfiguration("model"),
                "backend": LaunchConfiguration("backend"),
                "camera_namespace": LaunchConfiguration("camera_namespace"),
                "image_transport": LaunchConfiguration("image_transport"),
            },
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "qdbev.rviz"])],
        condition=IfCondition(PythonExpression(["'", LaunchConfiguration("use_rviz"),
                                                "'.lower() in ('true', '1') and ", repr(have_rviz)])),
        output="log",
    )
    no_rviz = LogInfo(msg="use_rviz:=true but rviz2 is not installed here: starting qdbev_node without RViz "
                          "(install ros-<distro>-rviz2, or run RViz on another machine)",
                      condition=IfCondition(PythonExpression(["'", LaunchConfiguration("use_rviz"),
                                                              "'.lower() in ('true', '1') and not ", repr(have_rviz)])))
    profile = SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile"),
        condition=IfCondition(PythonExpression(["'", LaunchConfiguration("fastdds_profile"), f"' != '{KEEP_PROFILE}'"])))
    return LaunchDescription(args + [profile, no_rviz, node, rviz])
