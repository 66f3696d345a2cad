#!/usr/bin/env bash
# Create / update the qdbev development environment (called by `make setup`).
#
#   tools/setup_env.sh [VENV]          (env: PYTHON, QDBEV_SETUP_JOBS)
#
# Steps, each skipped when its stamp file <venv>/.stamp-<step> holds the hash of its inputs:
#   1. venv       create the virtual environment (with --system-site-packages when a ROS 2
#                 install is sourced, so its rclpy and message packages are used)
#   2. torch      pip install torch==2.13.0 first and alone (a CPU build on this machine; a bare
#                 `torch` requirement could pull a multi-GB CUDA build)
#   3. python     pip install -r requirements.txt
#   4. ros        pip install -r requirements-ros.txt (ROS 2 wheels; skipped with a ROS install)
#   5. <pkg>      generate + install each interface package of ros_interfaces/ (vision_msgs,
#                 tf2_msgs) into the venv prefix, unless the ROS install already provides it
#   6. check      import rclpy and every interface package in a fresh interpreter
# Idempotent: a second run with nothing changed takes a few seconds. pip only adds what is
# missing. Nothing runs in the background.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_ARG="${1:-${VENV:-.venv}}"
case "$VENV_ARG" in /*) VENV="$VENV_ARG" ;; *) VENV="$REPO/$VENV_ARG" ;; esac
BUILD_DIR="$REPO/build/setup"
LOG_DIR="$BUILD_DIR/logs"
JOBS="${QDBEV_SETUP_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# Bump to force regeneration of the interface packages after a change of the build recipe.
GEN_RECIPE=1
T0=$SECONDS
STEP_T0=$SECONDS

log() { printf '[setup %4ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
step_done() { log "$1 ($((SECONDS - STEP_T0))s)"; STEP_T0=$SECONDS; }

# run_logged NAME CMD...: run CMD with output to $LOG_DIR/NAME.log; on failure show its tail.
run_logged() {
  local name="$1"; shift
  mkdir -p "$LOG_DIR"
  if ! "$@" >"$LOG_DIR/$name.log" 2>&1; then
    printf '[setup] ERROR: step "%s" failed; last lines of %s:\n' "$name" "$LOG_DIR/$name.log" >&2
    grep -v 'is ignored: it is neither a file nor a directory' "$LOG_DIR/$name.log" | tail -n 40 >&2
    exit 1
  fi
}

hash_of() {  # hash_of ITEMS...: files are hashed by content, other words literally
  local item
  for item in "$@"; do
    if [ -f "$item" ]; then printf '%s\n' "${item#"$REPO"/}"; cat "$item"; else printf '%s\n' "$item"; fi
  done | sha256sum | cut -c1-16
}
stamp_ok() { [ -f "$VENV/.stamp-$1" ] && [ "$(cat "$VENV/.stamp-$1")" = "$2" ]; }
stamp_set() { printf '%s\n' "$2" >"$VENV/.stamp-$1"; }

# ---------------------------------------------------------------- mode: ROS install or wheels
# A sourced ROS 2 install: ROS_DISTRO set and the python3 outside this venv imports rclpy.
# (PATH without the venv, so an activated venv does not count as a ROS install.)
OUTSIDE_PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -x -F "$VENV/bin" | paste -sd: -)"
ROS_MODE=wheels
if [ -n "${ROS_DISTRO:-}" ] && env -u VIRTUAL_ENV PATH="$OUTSIDE_PATH" python3 -c 'import rclpy' >/dev/null 2>&1; then
  ROS_MODE=system
fi

if [ -z "${PYTHON:-}" ]; then
  if [ "$ROS_MODE" = system ]; then
    PYTHON="$(PATH="$OUTSIDE_PATH" bash -c 'command -v python3')"  # the interpreter ROS was built for
  elif command -v python3.11 >/dev/null 2>&1; then
    PYTHON=python3.11
  else
    PYTHON=python3
  fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "python interpreter '$PYTHON' not found (set PYTHON=...)"
if [ "$ROS_MODE" = system ]; then
  log "mode: ROS 2 '$ROS_DISTRO' install found (python3 imports rclpy): venv with system site-packages, no ROS wheels"
else
  log "mode: no sourced ROS 2 install: ROS 2 kilted from PyPI wheels + generated interface packages"
fi

# ---------------------------------------------------------------- 1. venv
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  VENV_FLAGS=()
  [ "$ROS_MODE" = system ] && VENV_FLAGS+=(--system-site-packages)
  "$PYTHON" -m venv "${VENV_FLAGS[@]}" "$VENV" || die "could not create $VENV with $PYTHON (on Debian/Ubuntu: apt install python3-venv)"
  step_done "1/7 venv: created $VENV with $("$PY" -c 'import sys; print(sys.version.split()[0])')${VENV_FLAGS:+ (system site-packages)}"
else
  if [ "$ROS_MODE" = system ] && ! grep -q '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"; then
    log "WARNING: $VENV was created without --system-site-packages but a ROS install is sourced; 'make distclean setup' recreates it"
  fi
  step_done "1/7 venv: exists ($VENV)"
fi
# colcon must never crawl into the venv or the setup build tree (they hold package.xml files).
touch "$VENV/COLCON_IGNORE"
mkdir -p "$BUILD_DIR"; touch "$BUILD_DIR/COLCON_IGNORE"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

PIP=("$PY" -m pip install --disable-pip-version-check --no-input)

# ---------------------------------------------------------------- 2. torch
TORCH_SPEC="torch==2.13.0"
KEY="$(hash_of "$TORCH_SPEC" "$PYVER")"
if stamp_ok torch "$KEY"; then
  step_done "2/7 torch: up to date"
else
  run_logged torch "${PIP[@]}" "$TORCH_SPEC"
  stamp_set torch "$KEY"
  step_done "2/7 torch: $("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')"
fi

# ---------------------------------------------------------------- 3. python requirements
KEY="$(hash_of "$REPO/requirements.txt" "$PYVER")"
if stamp_ok python "$KEY"; then
  step_done "3/7 requirements.txt: up to date"
else
  run_logged python "${PIP[@]}" -r "$REPO/requirements.txt"
  stamp_set python "$KEY"
  step_done "3/7 requirements.txt: installed"
fi

# ---------------------------------------------------------------- 4. ROS 2 wheels
if [ "$ROS_MODE" = system ]; then
  step_done "4/7 ROS 2 wheels: skipped (using the ROS '$ROS_DISTRO' install)"
else
  KEY="$(hash_of "$REPO/requirements-ros.txt" "$REPO/requirements.txt" "$PYVER")"
  if stamp_ok ros "$KEY"; then
    step_done "4/7 ROS 2 wheels: up to date"
  else
    # -c requirements.txt: the wheels must not move numpy & co. off the pins above
    run_logged ros "${PIP[@]}" -r "$REPO/requirements-ros.txt" -c "$REPO/requirements.txt"
    stamp_set ros "$KEY"
    step_done "4/7 ROS 2 wheels: installed"
  fi
fi

# ---------------------------------------------------------------- 5. interface packages
# Generated with ament_cmake + rosidl from the wheels (or the ROS install) and installed into
# the venv prefix: libraries land in <venv>/lib, which the wheels' start-up hook
# (ros_wheels_bootstrapper.pth) puts on LD_LIBRARY_PATH, Python modules in site-packages.
command -v cmake >/dev/null 2>&1 || die "cmake not found (apt install cmake g++)"
NUMPY_VER="$("$PY" -c 'import numpy; print(numpy.__version__)')"
PKG_LIST=()
for dir in "$REPO"/ros_interfaces/*/; do
  [ -f "$dir/package.xml" ] && PKG_LIST+=("$(basename "$dir")")
done
for pkg in "${PKG_LIST[@]}"; do
  src="$REPO/ros_interfaces/$pkg"
  if [ "$ROS_MODE" = system ] && env -u VIRTUAL_ENV PATH="$OUTSIDE_PATH" python3 -c "import $pkg.msg" >/dev/null 2>&1; then
    step_done "5/7 $pkg: provided by the ROS install, not generated"
    continue
  fi
  mapfile -t SRC_FILES < <(find "$src" -type f \( -name '*.msg' -o -name '*.srv' -o -name '*.action' -o -name package.xml -o -name CMakeLists.txt \) | LC_ALL=C sort)
  KEY="$(hash_of "${SRC_FILES[@]}" "$REPO/tools/ros_wheels_fixup.cmake" "recipe $GEN_RECIPE" \
    "$REPO/requirements-ros.txt" "$ROS_MODE" "${ROS_DISTRO:-}" "$PYVER" "numpy $NUMPY_VER")"
  if stamp_ok "$pkg" "$KEY" && "$PY" -c "import $pkg.msg" >/dev/null 2>&1; then
    step_done "5/7 $pkg: up to date"
    continue
  fi
  bdir="$BUILD_DIR/$pkg"
  rm -rf "$bdir"; mkdir -p "$bdir"
  PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
  [ -f "$PY_INC/Python.h" ] || die "Python.h not found in $PY_INC (install the python$PYVER development headers, e.g. apt install python$PYVER-dev)"
  PY_INSTALL_DIR="$("$PY" -c 'import os, sys, sysconfig; print(os.path.relpath(sysconfig.get_paths()["purelib"], sys.prefix))')"
  CMAKE_ARGS=(
    -S "$src" -B "$bdir"
    -DCMAKE_INSTALL_PREFIX="$VENV"
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_TESTING=OFF
    -DPython3_EXECUTABLE="$PY"
    -DPYTHON_EXECUTABLE="$PY"
    -DPYTHON_INSTALL_DIR="$PY_INSTALL_DIR"
  )
  # The wheels' exported targets point at /opt/python/... of the machine that built them; the
  # fix-up rewrites only such non-existent paths (a no-op with a real ROS install).
  CMAKE_ARGS+=(-DCMAKE_PROJECT_INCLUDE="$REPO/tools/ros_wheels_fixup.cmake"
               -DQDBEV_PYTHON_INCLUDE_DIR="$PY_INC" -DQDBEV_NUMPY_INCLUDE_DIR="$NP_INC")
  if [ "$ROS_MODE" = wheels ]; then
    BUILD_ENV=(AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH")
  else
    BUILD_ENV=(AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
               CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
               PATH="$VENV/bin:$PATH")
  fi
  if [ "$ROS_MODE" = system ] && [ ! -f "$VENV/.stamp-bootstrapper" ]; then
    # Generated libraries in <venv>/lib must be on LD_LIBRARY_PATH at run time (the typesupport
    # is loaded by name; an RPATH is not enough). This tiny pure-Python package from the ROS
    # wheels adds <venv>/lib at interpreter start; with a ROS install it is all we take from them.
    run_logged bootstrapper "${PIP[@]}" ros-wheels-bootstrapper==0.1.2
    stamp_set bootstrapper 1
  fi
  run_logged "$pkg-configure" env "${BUILD_ENV[@]}" cmake "${CMAKE_ARGS[@]}"
  run_logged "$pkg-build" env "${BUILD_ENV[@]}" cmake --build "$bdir" -j "$JOBS"
  # remove what an earlier version of this package installed (e.g. a .msg that was dropped)
  manifest="$VENV/.qdbev-$pkg-install_manifest.txt"
  if [ -f "$manifest" ]; then
    while IFS= read -r f; do
      case "$f" in "$VENV"/*) rm -f -- "$f" ;; esac
    done <"$manifest"
  fi
  run_logged "$pkg-install" env "${BUILD_ENV[@]}" cmake --install "$bdir"
  cp "$bdir/install_manifest.txt" "$manifest"
  stamp_set "$pkg" "$KEY"
  step_done "5/7 $pkg: generated and installed into $VENV"
done

# ---------------------------------------------------------------- 6. qdbev itself
# Editable install: puts the `qdbev` and `qdbev_node` commands into $VENV/bin; the code stays
# in the checkout. No dependencies are resolved here (steps 2-5 did that).
KEY="$(hash_of "$REPO/setup.py" "$REPO/setup.cfg" "$REPO/package.xml" "$PYVER")"
if stamp_ok package "$KEY" && [ -x "$VENV/bin/qdbev" ]; then
  step_done "6/7 qdbev: up to date (editable)"
else
  run_logged package "${PIP[@]}" --no-deps --no-build-isolation -e "$REPO"
  stamp_set package "$KEY"
  step_done "6/7 qdbev: installed in editable mode (qdbev, qdbev_node on $VENV/bin)"
fi

# ---------------------------------------------------------------- 7. check
# A fresh interpreter with a minimal environment: no ROS variables, no LD_LIBRARY_PATH.
CHECK_IMPORTS="import rclpy"
for pkg in "${PKG_LIST[@]}"; do CHECK_IMPORTS="$CHECK_IMPORTS; import $pkg.msg"; done
CHECK_IMPORTS="$CHECK_IMPORTS; from vision_msgs.msg import Detection3DArray; from tf2_msgs.msg import TFMessage"
if [ "$ROS_MODE" = wheels ]; then
  CHECK_ENV=(env -i HOME="$HOME" PATH=/usr/bin:/bin LANG="${LANG:-C.UTF-8}")
else
  CHECK_ENV=(env)
fi
mkdir -p "$LOG_DIR"
if ! "${CHECK_ENV[@]}" "$PY" -c "$CHECK_IMPORTS" >"$LOG_DIR/check.log" 2>&1; then
  cat "$LOG_DIR/check.log" >&2
  die "import check failed: $CHECK_IMPORTS"
fi
step_done "7/7 check: rclpy, ${PKG_LIST[*]} import in a fresh interpreter"
log "done in $((SECONDS - T0))s: $VENV"
