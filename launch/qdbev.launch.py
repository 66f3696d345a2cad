"""Start qdbev_node (and optionally RViz) on a ROS 2 install.

    ros2 launch qdbev qdbev.launch.py use_rviz:=true                     # config/qdbev.yaml as it is
    ros2 launch qdbev qdbev.launch.py model:=nano-fp32-yaw backend:=torch     # its fp32 teacher in PyTorch
    ros2 launch qdbev qdbev.launch.py params_file:=my_vehicle.yaml        # every parameter from that file
    ros2 launch qdbev qdbev.launch.py --show-args                         # every argument, described

Arguments (defaults in brackets):
    params_file       [<share/qdbev>/config/qdbev.yaml]  the node's parameters (model, backend, cameras, ...)
    model, backend, camera_namespace, image_transport  ['']
                                    the node parameter of that name; their descriptions are the
                                    parameters' own, from qdbev_core/runtime/node_parameters.py
                                    (launch_argument_description)
    namespace         ['']          ROS namespace of the node (its topics become /<ns>/qdbev_node/...)
    use_rviz          [false]       also start RViz with config/qdbev.rviz; where rviz2 is not installed
                                    the launch says so and starts the node without it
    fastdds_profile   [<share/qdbev>/config/fastdds_shm.xml]  Fast DDS profile (128 MiB SHM segment for
                                    camera-sized messages); `keep` keeps the environment's
                                    FASTDDS_DEFAULT_PROFILES_FILE (launch rejects an empty `name:=`)

`model`, `backend`, `camera_namespace` and `image_transport` default to empty: an empty argument
is not passed to the node, so params_file decides (the shipped config/qdbev.yaml: the bundled
model on backend auto, /cameras, raw images); a non-empty one is passed after params_file and
overrides it. Traffic stays on this host when ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set in
the environment (tests and the demo do). test/unit/test_launch_files.py checks these names,
defaults and descriptions against the node's declared parameters and config/qdbev.yaml.
"""

import shutil

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from qdbev_core.runtime.node_parameters import launch_argument_description

OVERRIDABLE = ("model", "backend", "camera_namespace", "image_transport")
"""Launch arguments that override the node parameter of the same name when not empty."""

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


def node_parameters(params_file, values: dict[str, str]) -> list:
    """The node's ``parameters``: ``params_file``, then the non-empty ``OVERRIDABLE`` values.

    Later entries win in launch_ros, so an explicit argument overrides the file and an empty one
    leaves the file's value. Values are passed as strings (``ParameterValue(..., value_type=str)``):
    a model path such as ``2024`` must not become an integer.
    """
    overrides = {name: ParameterValue(values[name], value_type=str)
                 for name in OVERRIDABLE if values.get(name, "") != ""}
    return [params_file, overrides] if overrides else [params_file]


def _qdbev_node(context) -> list:
    """OpaqueFunction: the qdbev_node action, with the launch arguments resolved."""
    values = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDABLE}
    return [Node(
        package="qdbev",
        executable="qdbev_node",
        name="qdbev_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=node_parameters(LaunchConfiguration("params_file"), values),
    )]


def generate_launch_description():
    share = FindPackageShare("qdbev")
    args = [DeclareLaunchArgument(name, default_value="", description=launch_argument_description(name))
            for name in OVERRIDABLE]
    args += [
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
    node = OpaqueFunction(function=_qdbev_node)
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
