"""What runs per camera set, live (``qdbev_ros.node``) and offline (``qdbev_core.bag.replay``).

One module per job, one name per concept:

- ``codecs``: image message bytes (raw ``rgb8`` / ``bgr8``, JPEG / PNG) <-> ``(H, W, 3)`` uint8 RGB.
- ``errors``: ``FrameAssemblyError`` and its subclasses (bad input, naming the camera and a ``kind``).
- ``calibration``: ``CameraCalibration`` (one camera's validated ``K``, image size and
  ``cam2ego``), ``CameraRig`` (the six, ``assemble`` -> ``Frame``), the calibration YAML.
- ``transforms``: rigid-transform checks, ``StaticTransformTree`` (``/tf_static`` without tf2),
  ``PoseHistory`` (stamped ego poses), 4x4 matrices of ``geometry_msgs`` transforms and poses.
- ``sync``: ``ApproxTimeSync``, the approximate-time grouping of the six camera streams.
- ``processor``: ``CameraSetProcessor``, one camera set -> ``Frame`` -> time checks -> engine ->
  ``Detections`` (the node and replay both call it).
- ``preprocess``: ``Frame`` -> network input (resize, normalize, rescaled intrinsics).
- ``messages``: ``Detections`` <-> ``vision_msgs`` / ``qdbev_msgs`` / ``visualization_msgs``
  messages, written once against a ``MessageFactory`` (rclpy types in ``qdbev_ros``, ``rosbags``
  types in ``qdbev_core.bag``).
- ``node_parameters``: every ``qdbev_node`` parameter, declared once (type, default, range,
  description, whether it can change at run time).

Nothing here imports ROS: messages are read by field name, and built by a factory the caller passes.
"""
