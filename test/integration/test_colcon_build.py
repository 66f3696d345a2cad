"""`colcon build` of the package in a fresh workspace gives a ROS-conformant install tree.

The repository is copied (without the venv, VCS data, build outputs, datasets and caches) to
``<tmp>/ws/src/qdbev`` and built with the venv's colcon (colcon-common-extensions; ament_package
from the ROS wheels or the sourced ROS install). Checks what ``ros2 run`` / ``ros2 launch`` /
``ament_index`` rely on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Top-level entries never copied into the workspace (big, generated or machine-local).
_SKIP_TOP = {
    ".venv", "venv", ".git", "build", "install", "log", "runs", "data", "out", ".cache",
    ".pytest_cache", ".mypy_cache", ".ruff_cache",
}
_SKIP_ANY = {"__pycache__"}
_SKIP_SUFFIX = (".pyc", ".egg-info")


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n in _SKIP_ANY or n.endswith(_SKIP_SUFFIX)}
    here = Path(directory).resolve()
    if here == REPO:
        skip |= {n for n in names if n in _SKIP_TOP or (REPO / n / "pyvenv.cfg").exists()}
    elif here == REPO / "models":
        skip |= {"engines"}  # local engine cache
    return skip


def _colcon() -> list[str]:
    exe = Path(sys.executable).parent / "colcon"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("colcon")
    if found is None:
        pytest.fail("colcon not found: run `make setup` (requirements.txt installs colcon-common-extensions)")
    return [found]


@pytest.mark.timeout(300)
def test_colcon_build_install_layout(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = ws / "src" / "qdbev"
    shutil.copytree(REPO, src, ignore=_ignore, symlinks=True)
    assert (src / "package.xml").is_file() and (src / "setup.py").is_file()

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)  # build from the copy, not from the repository
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")  # no user-level colcon defaults
    proc = subprocess.run(
        [
            *_colcon(), "--log-base", str(ws / "log"), "build",
            "--base-paths", str(ws / "src"),
            "--build-base", str(ws / "build"),
            "--install-base", str(ws / "install"),
            "--event-handlers", "console_direct-", "status-", "summary+",
        ],
        cwd=ws, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    # only qdbev: the fallback interface packages in ros_interfaces/ are COLCON_IGNOREd
    assert sorted(p.name for p in (ws / "build").iterdir() if p.is_dir()) == ["qdbev"], proc.stdout

    prefix = ws / "install" / "qdbev"
    for script in ("qdbev_node", "qdbev"):
        path = prefix / "lib" / "qdbev" / script
        assert path.is_file(), f"missing {path}"
        assert os.access(path, os.X_OK)
    share = prefix / "share" / "qdbev"
    assert (share / "package.xml").is_file()
    assert (share / "launch").is_dir()
    assert (share / "config").is_dir()
    assert (share / "config" / "fastdds_shm.xml").is_file()
    assert (share / "models").is_dir()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "qdbev").is_file()
    # both Python packages are installed
    site = list(prefix.glob("lib/python3*/site-packages"))
    assert site, list(prefix.rglob("*"))[:50]
    assert (site[0] / "qdbev_core" / "__init__.py").is_file()
    assert (site[0] / "qdbev_ros" / "conversions.py").is_file()
    # the console scripts point at the right entry points
    entry_points = "\n".join(p.read_text() for p in site[0].glob("qdbev-*/entry_points.txt"))
    assert "qdbev_node = qdbev_ros.node:main" in entry_points, entry_points
    assert "qdbev = qdbev_ros.cli:main" in entry_points, entry_points  # core verbs + play, bag record
