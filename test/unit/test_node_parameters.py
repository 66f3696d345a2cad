"""One source of truth for qdbev_node's parameters (``qdbev_core.runtime.node_parameters``).

``config/qdbev.yaml``, the table in ``docs/NODE.md``, the README's parameter lists and the offline
``NodeParams`` must agree with ``NODE_PARAMETERS``; the node declares exactly these (checked with a
node in ``test_node_config.py``). To rewrite the docs table after changing a parameter:
``python -c "from qdbev_core.runtime.node_parameters import markdown_table; print(markdown_table())"``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from qdbev_core.runtime.node_parameters import (
    LIVE_PARAMETERS,
    NODE_PARAMETERS,
    PARAMETER_NAMES,
    PARAMETERS_BY_NAME,
    PARAMS_FILE_DIFFERS,
    defaults,
    markdown_table,
)

REPO = Path(__file__).resolve().parents[2]
PARAMS_FILE = REPO / "config" / "qdbev.yaml"


def _params_file() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]


def test_declarations_are_complete_and_consistent() -> None:
    assert len(set(PARAMETER_NAMES)) == len(PARAMETER_NAMES) == len(NODE_PARAMETERS)
    for p in NODE_PARAMETERS:
        assert len(p.description) > 20 and p.description.endswith("."), p.name
        assert p.problem(p.default) is None, p.name  # the default itself is accepted
        if p.low is not None or p.high is not None:
            assert p.type_name in ("integer", "double") and p.low <= p.default <= p.high, p.name
        if p.choices:
            assert p.type_name == "string", p.name
    assert LIVE_PARAMETERS == {"score_threshold", "max_detections", "marker_score_threshold", "allow_missing_cameras",
                               "camera_timeout_s", "error_hold_s", "ego_pose_tolerance_s", "slop", "queue_size"}
    bad = next(p for p in NODE_PARAMETERS if p.name == "device")
    assert bad.problem("cuda:1") is None and bad.problem("gpu") == "parameter 'device' is 'gpu'; use cpu, cuda or cuda:<index>"


def test_params_file_sets_every_parameter_with_the_builtin_default() -> None:
    """config/qdbev.yaml sets exactly the declared parameters, each of the declared type, inside its
    range / choices, and equal to the built-in default except where PARAMS_FILE_DIFFERS says why."""
    values = _params_file()
    assert set(values) == set(PARAMETER_NAMES)
    builtin = defaults()
    for p in NODE_PARAMETERS:
        v = values[p.name]
        assert type(v) is type(p.default), (p.name, v)
        assert p.problem(v) is None, p.name
        if p.low is not None:
            assert p.low <= v <= p.high, p.name
        if p.name not in PARAMS_FILE_DIFFERS:
            assert v == builtin[p.name], f"{p.name}: {v!r} in {PARAMS_FILE.name}, built-in {builtin[p.name]!r}"
    # only `model` differs (none is built in): the node run without the file picks the same backend
    assert set(PARAMS_FILE_DIFFERS) == {"model"}
    assert values["backend"] == builtin["backend"] == "auto"
    header = PARAMS_FILE.read_text().split("/**:")[0]
    for name in PARAMS_FILE_DIFFERS:  # the file says which values are not the built-in ones
        assert f"`{name}`" in header, name
    assert "`backend`" not in header, "the header still says backend differs from the built-in default"


def test_backend_default_is_auto_and_every_engine_backend_is_described() -> None:
    """Default ``auto``; the description names exactly ``load_engine``'s backends (an unknown one is
    refused by ``load_engine`` at startup, ``test_node_parameter_validation.py``)."""
    from qdbev_core.engine import BACKENDS

    spec = PARAMETERS_BY_NAME["backend"]
    assert spec.default == "auto" and spec.default in BACKENDS
    listed = re.findall(r"(?:^|\| )(\w+)", spec.description.split(": ", 1)[1])
    assert sorted(listed) == sorted(BACKENDS), listed


def test_params_file_model_is_the_bundled_default() -> None:
    from qdbev_core.models_manifest import default_model

    assert _params_file()["model"] == default_model()


def test_docs_table_is_generated_from_the_declarations() -> None:
    text = (REPO / "docs" / "NODE.md").read_text()
    start = text.index("| parameter | default | changeable at run time | meaning |")
    table = text[start: text.index("\n\n", start) + 1]
    assert table == markdown_table(), "docs/NODE.md's parameter table is stale: paste markdown_table() (module doc)"


def test_readme_lists_the_parameters_by_run_time_changeability() -> None:
    text = (REPO / "README.md").read_text()
    start = text.index("**Parameters**")
    para = " ".join(text[start: text.index("\n\n", start)].split())
    live_part = para[para.index("Changeable at run time"): para.index("Read-only")]
    ro_part = para[para.index("Read-only"): para.index("An integer literal")]
    names = set(PARAMETER_NAMES)
    assert [n for n in re.findall(r"`(\w+)`", live_part) if n in names] == [p.name for p in NODE_PARAMETERS if p.live]
    assert [n for n in re.findall(r"`(\w+)`", ro_part) if n in names] == [p.name for p in NODE_PARAMETERS
                                                                       if not p.live]
    assert "qdbev_core/runtime/node_parameters.py" in para and "docs/NODE.md" in para


def test_offline_node_params_use_the_declared_defaults() -> None:
    """``NodeParams`` (what ``qdbev replay`` reads) has the node's names and built-in defaults."""
    from qdbev_core.bag.layout import NodeParams

    builtin = defaults()
    params = NodeParams()
    for f in params.__dataclass_fields__:
        assert f in builtin, f"NodeParams.{f} is not a node parameter"
        assert getattr(params, f) == builtin[f], f


def test_autoware_labels_are_the_declared_choices() -> None:
    pytest.importorskip("rclpy", reason="qdbev_ros.autoware needs the ROS message packages")
    from qdbev_ros.autoware import OBSTACLE_LABELS

    (spec,) = [p for p in NODE_PARAMETERS if p.name == "autoware_obstacle_label"]
    assert spec.choices == OBSTACLE_LABELS
