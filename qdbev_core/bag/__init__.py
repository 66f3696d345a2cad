"""Rosbag2 tools without ROS (``rosbags`` library): write, replay and describe qdbev bags.

- ``typestore``: the ``rosbags`` type store (ROS 2 kilted + vision_msgs from ``ros_interfaces/``).
- ``messages``: building / reading ROS messages as ``rosbags`` objects, field for field the
  messages the node exchanges.
- ``layout``: topic names and frames of a qdbev bag, the recorded source (``BagSource``) and the
  node parameters offline tools honour (``NodeParams``).
- ``from_nuscenes``: one scene of a nuScenes-format dataroot -> rosbag2 MCAP (``qdbev bag
  from-nuscenes``).
- ``replay``: a bag through the node's frame assembly and an engine, offline, into an output bag
  and the nuScenes evaluator (``qdbev replay``).

Live playback (``qdbev play``) needs rclpy and lives in ``qdbev_ros.play``. Nothing here imports
rclpy or ``qdbev_ros``; heavy modules are imported by the submodules only.
"""
