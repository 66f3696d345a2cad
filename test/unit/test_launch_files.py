"""launch/*.launch.py and config/qdbev.rviz agree with the node and the config files.

Where ``launch_ros`` is importable (a ROS install) the launch files are loaded and their launch
arguments listed by the launch system itself. Everywhere (the PyPI ROS 2 wheels have no
``launch``/``launch_ros``) they are checked without it: the launch arguments, their defaults and
descriptions from ``generate_launch_description()`` run with stub launch modules (the arguments
that set node parameters are declared in a loop, described by ``node_parameters.py``), and with
``ast`` the node package / executable / name, the parameter names passed to the node (declared
by ``qdbev_ros.node``), the files they reference, and the topics RViz shows.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_launch_issue18 import declared_arguments  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
MAIN, REPLAY = LAUNCH / "qdbev.launch.py", LAUNCH / "replay.launch.py"
PARAMS = yaml.safe_load((REPO / "config" / "qdbev.yaml").read_text())["/**"]["ros__parameters"]


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == name) or (isinstance(f, ast.Attribute) and f.attr == name):
                out.append(node)
    return out


def _kw(call: ast.Call, key: str):
    for k in call.keywords:
        if k.arg == key:
            return k.value
    return None


def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def _launch_args(path: Path) -> dict[str, object]:
    """``{name: default string, or ("path", parts after the package share) of a PathJoinSubstitution, or
    None (required)}``, from the launch file's ``generate_launch_description()`` run with stub launch
    modules (``test_launch_issue18.declared_arguments``); every argument has a description."""
    out: dict[str, object] = {}
    for name, kw in declared_arguments(path).items():
        assert kw.get("description"), f"launch argument {name} has no description"
        default = kw.get("default_value")
        if isinstance(default, tuple) and default[0] == "PathJoinSubstitution":
            out[name] = ("path", tuple(default[1][0][1:]))
        else:
            out[name] = default
    return out


def _launch_config_names(node: ast.AST) -> set[str]:
    return {_literal(c.args[0]) for c in _calls(node, "LaunchConfiguration")}


@pytest.fixture(scope="module")
def node_params() -> dict[str, object]:
    from qdbev_core.runtime.node_parameters import defaults

    return defaults()


def test_launch_files_parse_with_launch_ros_where_available() -> None:
    def importable(name: str) -> bool:
        try:  # a bare find_spec("launch") also finds this repository's launch/ folder (a namespace package)
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            return False

    if not (importable("launch_ros") and importable("launch.launch_description_sources")):
        pytest.skip("launch / launch_ros are not importable here (not on PyPI); the static checks below run instead")
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    for path, required in ((MAIN, set()), (REPLAY, {"bag"})):
        desc = get_launch_description_from_python_launch_file(str(path))
        names = {a.name for a in desc.get_launch_arguments()}
        assert names >= {"model", "backend", "camera_namespace", "params_file", "use_rviz"} | required


def test_main_launch_file_agrees_with_node_and_config(node_params) -> None:
    tree = ast.parse(MAIN.read_text())
    args = _launch_args(MAIN)
    assert set(args) >= {"model", "backend", "camera_namespace", "params_file", "use_rviz", "image_transport"}
    # node: package qdbev, the console script, the node's own name
    nodes = {_literal(_kw(c, "executable")): c for c in _calls(tree, "Node")}
    assert set(nodes) == {"qdbev_node", "rviz2"}
    det = nodes["qdbev_node"]
    assert _literal(_kw(det, "package")) == "qdbev"
    from_xml = re.search(r"<name>\s*([^<\s]+)\s*</name>", (REPO / "package.xml").read_text()).group(1)
    assert from_xml == "qdbev"
    assert re.search(r'"qdbev_node\s*=\s*qdbev_ros\.node:main"', (REPO / "setup.py").read_text())
    from qdbev_ros.node import NODE_NAME

    assert _literal(_kw(det, "name")) == NODE_NAME
    # parameters: the params file first, then only the non-empty OVERRIDABLE arguments (issue 18,
    # 7(a); test_launch_issue18.py runs node_parameters / _qdbev_node with stubs)
    plist = _kw(det, "parameters")
    assert isinstance(plist, ast.Call) and plist.func.id == "node_parameters"
    assert _launch_config_names(plist.args[0]) == {"params_file"}
    overridable = next(_literal(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                       and getattr(n.targets[0], "id", "") == "OVERRIDABLE")
    assert set(overridable) == {"model", "backend", "camera_namespace", "image_transport"}
    for name in overridable:
        assert name in node_params, f"launch passes undeclared parameter {name!r}"
        assert name in PARAMS, f"config/qdbev.yaml does not set {name!r}"
        # empty default: launching without arguments passes nothing, so the params file decides
        assert args[name] == "", name
    assert args["params_file"] == ("path", ("config", "qdbev.yaml"))
    assert args["fastdds_profile"] == ("path", ("config", "fastdds_shm.xml"))
    assert args["use_rviz"] == "false"
    rviz = nodes["rviz2"]
    assert _launch_config_names(_kw(rviz, "condition")) == {"use_rviz"}
    rviz_args = _kw(rviz, "arguments")
    assert _literal(rviz_args.elts[0]) == "-d"
    assert [_literal(e) for e in rviz_args.elts[1].args[0].elts[1:]] == ["config", "qdbev.rviz"]
    env = _calls(tree, "SetEnvironmentVariable")
    assert env and _literal(env[0].args[0]) == "FASTDDS_DEFAULT_PROFILES_FILE"
    for sub in ("qdbev.yaml", "fastdds_shm.xml", "qdbev.rviz"):
        assert (REPO / "config" / sub).is_file()
    # every LaunchConfiguration used is declared (LaunchConfiguration(name) for name in OVERRIDABLE: None here)
    assert _launch_config_names(tree) - {None} <= set(args)


def test_launch_arguments_yaml_and_node_parameters_agree() -> None:
    """Launch arguments named like a node parameter are that parameter: declared in
    node_parameters.py, set in config/qdbev.yaml, described by the parameter's own declaration
    (``launch_argument_description``, choices included), with an empty default so the params file
    decides (replay's ``image_transport`` defaults to ``auto``: the bag's). No other launch argument
    shadows a node parameter."""
    from qdbev_core.runtime.node_parameters import PARAMETERS_BY_NAME, launch_argument_description

    main_overridable = ("model", "backend", "camera_namespace", "image_transport")
    for path in (MAIN, REPLAY):
        declared = declared_arguments(path)
        as_params = [n for n in declared if n in PARAMETERS_BY_NAME]
        assert set(as_params) == set(main_overridable), path.name
        for name in as_params:
            spec, desc = PARAMETERS_BY_NAME[name], declared[name]["description"]
            assert name in PARAMS and spec.problem(PARAMS[name]) is None, (path.name, name)
            assert desc.startswith(spec.description + " Empty: params_file's value"), (path.name, name, desc)
            assert all(choice in desc for choice in spec.choices), (path.name, name, desc)
            expected_default = "auto" if (path, name) == (REPLAY, "image_transport") else ""
            assert declared[name]["default_value"] == expected_default, (path.name, name)
        if path == MAIN:
            assert [declared[n]["description"] for n in main_overridable] == [
                launch_argument_description(n) for n in main_overridable]
    assert PARAMS["backend"] == PARAMETERS_BY_NAME["backend"].default == "auto"


def test_config_and_launch_run_the_manifests_default_model() -> None:
    """config/qdbev.yaml names the manifest's default model (and that model file is bundled); both
    launch files leave `model` to the params file (default ''), so they run it too."""
    from qdbev_core.models_manifest import default_model, read_manifest, resolve_model

    name = default_model(REPO / "models" / "manifest.yaml")
    assert name is not None and name in read_manifest(REPO / "models" / "manifest.yaml")
    assert PARAMS["model"] == name
    for launch in (MAIN, REPLAY):
        args = _launch_args(launch)
        assert args["model"] == "" and args["params_file"] == ("path", ("config", "qdbev.yaml")), launch.name
    assert resolve_model(name)[0].is_file()


def test_replay_launch_file_plays_the_bag_into_the_node(node_params) -> None:
    tree = ast.parse(REPLAY.read_text())
    args = _launch_args(REPLAY)
    main_args = _launch_args(MAIN)
    assert args["bag"] is None  # required
    assert set(args) >= {"bag", "rate", "loop", "model", "backend", "camera_namespace", "params_file", "use_rviz"}
    assert args["image_transport"] == "auto"  # the bag's own transport (test_launch_issue18.py, 7(f))
    assert args["use_rviz"] == "true"
    for shared in ("model", "backend", "camera_namespace", "params_file", "fastdds_profile", "namespace"):
        assert args[shared] == main_args[shared], shared
    # it includes qdbev.launch.py and forwards only arguments that file declares
    inc = _calls(tree, "IncludeLaunchDescription")
    assert len(inc) == 1
    path_parts = [_literal(e) for e in _calls(inc[0], "PathJoinSubstitution")[0].args[0].elts[1:]]
    assert path_parts == ["launch", "qdbev.launch.py"] and MAIN.is_file()
    forwarded = _kw(inc[0], "launch_arguments").func.value
    assert {_literal(k) for k in forwarded.keys} <= set(main_args)
    # ros2 bag play <bag> --rate <rate> [--loop]
    plays = _calls(tree, "ExecuteProcess")
    assert len(plays) == 2
    for p in plays:
        cmd = _kw(p, "cmd").elts
        assert [_literal(e) for e in cmd[:3]] == ["ros2", "bag", "play"]
        assert _launch_config_names(cmd[3]) == {"bag"} and "--rate" in [_literal(e) for e in cmd]
        assert _launch_config_names(_kw(p, "condition")) == {"loop"}
    assert _launch_config_names(tree) <= set(args)


def test_rviz_config_shows_the_nodes_topics(node_params) -> None:
    from qdbev_ros.node import NODE_NAME

    cfg = yaml.safe_load((REPO / "config" / "qdbev.rviz").read_text())
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == PARAMS["frame_id"] == node_params["frame_id"]
    displays = {d["Class"]: [] for d in vm["Displays"]}
    for d in vm["Displays"]:
        displays[d["Class"]].append(d)
    assert "rviz_default_plugins/TF" in displays
    (markers,) = displays["rviz_default_plugins/MarkerArray"]
    assert markers["Topic"]["Value"] == f"/{NODE_NAME}/markers"
    assert set(markers["Namespaces"]) == {"boxes", "labels", "velocity"}
    ns = PARAMS["camera_namespace"].rstrip("/")
    images = {d["Topic"]["Value"] for d in displays["rviz_default_plugins/Image"]}
    assert images == {f"{ns}/CAM_FRONT/image_raw", f"{ns}/CAM_FRONT/image_raw/compressed"}


def test_setup_installs_launch_and_config() -> None:
    text = (REPO / "setup.py").read_text()
    assert '_files("launch/*")' in text and '_files("config/*")' in text
    assert sorted(p.name for p in LAUNCH.glob("*.launch.py")) == ["qdbev.launch.py", "replay.launch.py"]
