"""ament_python build of the qdbev package (colcon build / pip install)."""

from __future__ import annotations

import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE_NAME = "qdbev"
HERE = Path(__file__).resolve().parent


def _version() -> str:
    """The version in package.xml (single source of truth)."""
    text = (HERE / "package.xml").read_text(encoding="utf-8")
    match = re.search(r"<version>\s*([^<\s]+)\s*</version>", text)
    if match is None:
        raise RuntimeError("no <version> in package.xml")
    return match.group(1)


def _files(pattern: str) -> list[str]:
    """Regular files matching ``pattern`` relative to the package root (empty dir -> [])."""
    return sorted(p for p in glob(pattern, root_dir=HERE) if (HERE / p).is_file())


setup(
    name=PACKAGE_NAME,
    version=_version(),
    packages=find_packages(include=["qdbev_core", "qdbev_core.*", "qdbev_ros", "qdbev_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", _files("launch/*")),
        (f"share/{PACKAGE_NAME}/config", _files("config/*")),
        # model manifest + bundled small checkpoint (models/engines/ is a local cache: not installed)
        (f"share/{PACKAGE_NAME}/models", _files("models/*")),
    ],
    install_requires=["setuptools"],
    # `pip install -e .[gpu]`: the TensorRT backend (10.x or 11.x; docs/TENSORRT.md). The CUDA build of
    # torch it also needs comes from PyTorch's own index, which an extra cannot name: see requirements-gpu.txt.
    extras_require={"gpu": ["tensorrt-cu12>=10.0,<12"]},
    zip_safe=False,
    maintainer="qdbev maintainers",
    maintainer_email="qdbev@example.com",
    description="Quantized multi-camera BEV 3D object detection (QD-BEV) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "qdbev = qdbev_ros.cli:main",
            "qdbev_node = qdbev_ros.node:main",
        ],
    },
)
