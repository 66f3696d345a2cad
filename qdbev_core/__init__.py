"""qdbev_core: the ROS-free half of qdbev.

Data (SynthScenes generator, nuScenes-format reader), model, quantization, distillation,
training, evaluation, export and inference engines live here. Nothing in this package imports
rclpy or a ROS message package; ``qdbev_ros`` is the thin glue on top.
"""

__version__ = "0.1.0"
