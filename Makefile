# qdbev developer entry points.
#
#   make setup      create/update the venv (idempotent; seconds when nothing changed)
#   make test       run the whole pytest suite in the venv
#   make demo       run tools/demo.sh in the venv's environment
#   make clean      remove build artefacts (build/, install/, log/, caches); keeps the venv
#   make distclean  clean + remove the venv
#
# Variables: VENV (default .venv), PYTHON (default python3.11, else python3; with a sourced ROS 2
# install the python3 that imports rclpy), ROS_DOMAIN_ID (default 42).

VENV ?= .venv
PYTHON ?=
VENV_PY := $(VENV)/bin/python
PYTEST_ARGS ?= -q -p no:cacheprovider --timeout=600

# DDS traffic stays on this machine's loopback (no multicast on the network interface).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
ROS_DOMAIN_ID ?= 42
export ROS_DOMAIN_ID
# Fast DDS profile with a 128 MiB shared-memory segment (camera-sized messages) + UDPv4.
FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_shm.xml
export FASTDDS_DEFAULT_PROFILES_FILE

.PHONY: setup test demo clean distclean

setup:
	@PYTHON="$(PYTHON)" bash tools/setup_env.sh "$(VENV)"

test: setup
	$(VENV_PY) -m pytest test $(PYTEST_ARGS)

demo: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" bash tools/demo.sh

clean:
	rm -rf build install log .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
