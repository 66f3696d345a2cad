"""Thin ROS 2 glue around ``qdbev_core``: the node, message conversion, camera sync, bag replay.

Modules here may import rclpy and ROS message packages; ``qdbev_core`` never does. Keep this
package thin: no model math and no geometry beyond converting between messages and the core
types (``Frame``, ``Detections``). Importing the package itself imports nothing from ROS.
"""
