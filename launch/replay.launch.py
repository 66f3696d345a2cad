"""Play a rosbag2 into qdbev_node with `ros2 bag play`, and show the result in RViz.

    ros2 launch qdbev replay.launch.py bag:=out/demo/scene.bag
    ros2 launch qdbev replay.launch.py bag:=my.bag image_transport:=raw rate:=0.5 loop:=true

Arguments (defaults in brackets):
    bag               (required)    rosbag2 folder, e.g. from `qdbev bag from-nuscenes`
    rate              [1.0]         playback speed
    loop              [false]       replay the bag until stopped (the node resets its temporal state)
    start_delay       [5.0]         seconds before playing starts, so the node has loaded its engine and
                                    subscribed to CameraInfo
    model, backend, camera_namespace, params_file, use_rviz, fastdds_profile: as qdbev.launch.py
    image_transport   [compressed]  `qdbev bag from-nuscenes` writes JPEG CompressedImage by default

The node subscribes to the images only once it has every camera's CameraInfo and TF, which
`ros2 bag play` publishes together with the first images: the first camera set of the bag is
spent calibrating the node and yields no detections. `qdbev play --wait-for-subscribers 30`
(no ros2 bag needed) republishes the calibration until the node is subscribed and loses nothing;
`qdbev replay` (offline) behaves like the latter.

`ros2 bag play` republishes /tf_static with the transient-local QoS recorded in the bag.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("qdbev")
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
        DeclareLaunchArgument("loop", default_value="false", description="loop the bag"),
        DeclareLaunchArgument("start_delay", default_value="5.0",
                              description="seconds to wait before playing (node startup)"),
        DeclareLaunchArgument("model", default_value="nano-w4a6-qdbev",
                              description="model name in models/manifest.yaml or a .safetensors path"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", description="torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("camera_namespace", default_value="/cameras",
                              description="prefix of the camera topics in the bag"),
        DeclareLaunchArgument("image_transport", default_value="compressed",
                              description="raw | compressed: the image type the bag holds"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "qdbev.yaml"]),
                              description="node parameters file"),
        DeclareLaunchArgument("use_rviz", default_value="true", description="start RViz with config/qdbev.rviz"),
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
    return LaunchDescription(args + [
        detector,
        TimerAction(period=LaunchConfiguration("start_delay"), actions=[play_once, play_loop]),
    ])
