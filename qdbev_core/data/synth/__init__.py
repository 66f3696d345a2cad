"""SynthScenes: a procedural multi-camera driving dataset written in the nuScenes on-disk format.

``generate_dataset(SynthConfig(out=...))`` writes ``<out>/<version>/`` (the 13 nuScenes tables,
``splits.json`` with ``synth_train`` / ``synth_val``, ``synth_meta.json``), ``samples/CAM_*``
JPEGs of the six nuScenes cameras, key-frame ``samples/LIDAR_TOP`` point files and ``maps/``,
loadable unchanged by ``nuscenes.NuScenes(version, dataroot)``. Modules: ``config`` (knobs,
constants, tokens), ``world`` (road, ego trajectory, objects: data), ``route`` (random road and
ego route), ``palette`` (default colours), ``placement`` (object proposals, no-overlap check),
``build`` (``build_world``), ``style`` (appearance styles), ``render`` (cameras), ``lidar``
(point counts), ``tables`` (JSON rows), ``generate`` (orchestration).
"""

from .config import GENERATOR_VERSION, SynthConfig
from .generate import SynthCoverageError, generate_dataset, generate_scene

__all__ = ["GENERATOR_VERSION", "SynthConfig", "SynthCoverageError", "generate_dataset", "generate_scene"]
