"""Launch files, issue 18 defect 7 (static: ``launch`` / ``launch_ros`` are not on PyPI).

(a) a params file can set ``model``, ``backend``, ``camera_namespace``, ``image_transport``: the
launch arguments default to empty and only non-empty ones are passed, after the file; (f) the
replay launch's ``image_transport:=auto`` picks the transport of a ``qdbev bag from-nuscenes``
bag (compressed by default, raw with ``--raw``), whose image topics then equal the node's; (b) ``fastdds_profile:=keep`` keeps the environment's profile; (c) rviz2 only where it is
installed, else a message and the node alone; (d) replay plays the bag when the node logs that
it is ready (``start_delay`` is only the longest wait); (e) a ``namespace`` argument.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAIN, REPLAY = REPO / "launch" / "qdbev.launch.py", REPO / "launch" / "replay.launch.py"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and
            ((isinstance(n.func, ast.Name) and n.func.id == name) or
             (isinstance(n.func, ast.Attribute) and n.func.attr == name))]


def _kw(call: ast.Call, key: str):
    return next((k.value for k in call.keywords if k.arg == key), None)


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def declared_arguments(path: Path) -> dict[str, dict]:
    """``{name: {"default_value": ..., "description": ...}}``: the ``DeclareLaunchArgument`` calls
    that the launch file's ``generate_launch_description()`` makes, run with stub launch modules
    (some are declared in a loop over parameter names, so reading the source is not enough)."""
    declared: dict[str, dict] = {}

    def declare(name, **kw):
        assert name not in declared, f"{path.name} declares {name!r} twice"
        declared[name] = kw
        return ("DeclareLaunchArgument", (name,), kw)

    _exec_with_stubs(path, {"DeclareLaunchArgument": declare})["generate_launch_description"]()
    return declared


def _args(path: Path) -> dict[str, object]:
    """``{name: default}``: a string default as is, a substitution ``"expr"``, none (required) ``None``."""
    return {name: (d if isinstance(d, str) else "expr") if (d := kw.get("default_value")) is not None else None
            for name, kw in declared_arguments(path).items()}


def test_namespace_argument_reaches_the_node() -> None:
    tree = ast.parse(MAIN.read_text())
    assert _args(MAIN)["namespace"] == ""
    (node,) = [c for c in _calls(tree, "Node") if "qdbev_node" in _strings(_kw(c, "executable"))]
    ns = _kw(node, "namespace")
    assert ns is not None and _strings(ns) == ["namespace"]
    replay = ast.parse(REPLAY.read_text())
    assert _args(REPLAY)["namespace"] == ""
    forwarded = _kw(_calls(replay, "IncludeLaunchDescription")[0], "launch_arguments").func.value
    assert "namespace" in [k.value for k in forwarded.keys]


def test_fastdds_profile_can_keep_the_environment() -> None:
    tree = ast.parse(MAIN.read_text())
    (env,) = _calls(tree, "SetEnvironmentVariable")
    cond = _kw(env, "condition")
    assert cond is not None, "the profile is always set: the environment's value cannot be kept"
    assert "fastdds_profile" in _strings(cond) and any("KEEP_PROFILE" == n.id for n in ast.walk(cond)
                                                      if isinstance(n, ast.Name))
    assert "KEEP_PROFILE = \"keep\"" in MAIN.read_text()


def test_rviz_only_where_installed_with_a_message_otherwise() -> None:
    text = MAIN.read_text()
    tree = ast.parse(text)
    (rviz,) = [c for c in _calls(tree, "Node") if "rviz2" in _strings(_kw(c, "executable"))]
    names = {n.id for n in ast.walk(_kw(rviz, "condition")) if isinstance(n, ast.Name)}
    assert "have_rviz" in names, "rviz2 is started whether or not it is installed"
    logs = _calls(tree, "LogInfo")
    assert any("not installed" in " ".join(_strings(c)) and _kw(c, "condition") is not None for c in logs)
    assert "def rviz2_installed()" in text


def test_replay_plays_when_the_node_is_ready() -> None:
    text = REPLAY.read_text()
    tree = ast.parse(text)
    handlers = _calls(tree, "OnProcessIO")
    assert handlers and _kw(handlers[0], "on_stderr") is not None, "playback does not wait for the node"
    marker = next(n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", "") == "READY_MARKER")
    assert marker in (REPO / "qdbev_ros" / "node.py").read_text(), "the node no longer logs the ready line"
    # the timer only starts playing when the ready line never came, never a second time
    (timer,) = _calls(tree, "TimerAction")
    assert _calls(timer, "OpaqueFunction") and not _calls(timer, "ExecuteProcess")
    assert float(_args(REPLAY)["start_delay"]) >= 60.0


def test_replay_play_once_logic() -> None:
    """``PlayOnce`` without the launch package: stub its imports, exercise the two paths."""
    import types

    ns = _exec_with_stubs(REPLAY)
    play = ns["PlayOnce"](["play"])
    ev = types.SimpleNamespace(text=b"[INFO] qdbev_node: loading")
    assert play.on_output(ev) is None
    ev.text = f"[INFO] qdbev_node: engine x {ns['READY_MARKER']} on /cameras".encode()
    assert play.on_output(ev) == ["play"]
    assert play.on_output(ev) is None and play.on_timeout(None) == []
    late = ns["PlayOnce"](["play"])
    assert late.on_timeout(None)[-1] == "play" and late.on_output(ev) is None


# ---- 7(a), 7(f): the launch files' own functions, run with stub launch modules -----------------------

_LAUNCH_MODULES = ("launch", "launch.actions", "launch.conditions", "launch.event_handlers",
                   "launch.launch_description_sources", "launch.substitutions", "launch_ros",
                   "launch_ros.actions", "launch_ros.parameter_descriptions", "launch_ros.substitutions")


def _exec_with_stubs(path: Path, fakes: dict | None = None) -> dict:
    """Execute a launch file with every launch / launch_ros name stubbed (``fakes`` override names)."""
    import sys
    import types

    fakes = fakes or {}
    stub = {}
    for mod in _LAUNCH_MODULES:
        m = types.ModuleType(mod)
        m.__getattr__ = lambda name: fakes.get(name, lambda *a, **k: (name, a, k))  # type: ignore[attr-defined]
        stub[mod] = m
    saved = {k: sys.modules.get(k) for k in stub}
    sys.modules.update(stub)
    try:
        ns: dict = {"__file__": str(path)}
        exec(compile(path.read_text(), str(path), "exec"), ns)  # noqa: S102 - our own launch file
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return ns


class _Config:
    """Stands in for ``LaunchConfiguration``: ``perform(context)`` reads ``context[name]``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict) -> str:
        return context[self.name]

    def __eq__(self, other) -> bool:
        return isinstance(other, _Config) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def _param_value(value, value_type=None):
    return ("ParameterValue", value, value_type)


def test_params_file_decides_unless_an_argument_is_given() -> None:
    """7(a): empty arguments pass nothing (the file is obeyed); given ones come after the file."""
    nodes: list[dict] = []
    ns = _exec_with_stubs(MAIN, {"LaunchConfiguration": _Config, "ParameterValue": _param_value,
                                 "Node": lambda **k: nodes.append(k) or k})
    assert ns["OVERRIDABLE"] == ("model", "backend", "camera_namespace", "image_transport")
    empty = {name: "" for name in ns["OVERRIDABLE"]} | {"params_file": "/p.yaml", "namespace": ""}
    (node,) = ns["_qdbev_node"](empty)
    assert node["executable"] == "qdbev_node" and node["namespace"] == _Config("namespace")
    assert node["parameters"] == [_Config("params_file")], "launch defaults override the params file"
    given = dict(empty, model="nano-fp32", image_transport="compressed")
    (node,) = ns["_qdbev_node"](given)
    assert node["parameters"] == [_Config("params_file"), {"model": ("ParameterValue", "nano-fp32", str),
                                                           "image_transport": ("ParameterValue", "compressed", str)}]
    # all four, and a numeric-looking model path stays a string
    full = dict(empty, model="2024", backend="torch", camera_namespace="/cam", image_transport="raw")
    params = ns["node_parameters"]("FILE", full)
    assert params[0] == "FILE" and list(params[1]) == list(ns["OVERRIDABLE"])
    assert params[1]["model"] == ("ParameterValue", "2024", str)
    # the generated description declares them empty and starts the node through _qdbev_node
    desc = ns["generate_launch_description"]()
    actions = desc[1][0]
    declared = {a[1][0]: a[2].get("default_value") for a in actions
                if isinstance(a, tuple) and a[0] == "DeclareLaunchArgument"}
    assert all(declared[name] == "" for name in ns["OVERRIDABLE"])
    assert ("OpaqueFunction", (), {"function": ns["_qdbev_node"]}) in actions


def test_replay_forwards_empty_arguments_and_resolves_auto_first() -> None:
    tree = ast.parse(REPLAY.read_text())
    args = _args(REPLAY)
    assert args["model"] == args["backend"] == args["camera_namespace"] == ""
    assert args["image_transport"] == "auto"
    # the OpaqueFunction that resolves `auto` comes before the include that forwards image_transport
    desc = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "LaunchDescription")
    elts = desc.args[0].right.elts  # LaunchDescription(args + [...])
    opaque = [i for i, e in enumerate(elts) if isinstance(e, ast.Call) and getattr(e.func, "id", "") == "OpaqueFunction"
              and getattr(_kw(e, "function"), "id", "") == "_resolve_image_transport"]
    include = [i for i, e in enumerate(elts) if isinstance(e, ast.Name) and e.id == "detector"]
    assert len(opaque) == len(include) == 1 and opaque[0] < include[0]


@pytest.fixture(scope="module")
def bags(synth_dataroot: Path, tmp_path_factory) -> dict[str, Path]:
    """A scene bag from ``qdbev bag from-nuscenes`` code: default (JPEG) and ``--raw``."""
    from qdbev_core.bag.from_nuscenes import bag_from_nuscenes
    from qdbev_core.data.reader import NuScenesReader

    reader = NuScenesReader(synth_dataroot, "v1.0-mini", split="synth_val", load_images=False)
    scene = reader.scenes()[0]
    out = tmp_path_factory.mktemp("launch_bags")
    bag_from_nuscenes(synth_dataroot, "v1.0-mini", scene.name, out / "jpeg", nusc=reader.nusc)
    bag_from_nuscenes(synth_dataroot, "v1.0-mini", scene.name, out / "raw", raw=True, nusc=reader.nusc)
    return {"compressed": out / "jpeg", "raw": out / "raw"}


def test_our_bags_reach_the_node_with_the_replay_defaults(bags: dict[str, Path], tmp_path: Path) -> None:
    """7(f): with replay.launch.py's defaults (image_transport auto, the rest from
    config/qdbev.yaml) the node subscribes to exactly the bag's image topics, either kind."""
    import yaml

    from qdbev_core.bag.layout import image_topic, read_metadata
    from qdbev_core.types import CAMERA_NAMES

    params = yaml.safe_load((REPO / "config" / "qdbev.yaml").read_text())["/**"]["ros__parameters"]
    ns = _exec_with_stubs(REPLAY)
    for kind, bag in bags.items():
        transport, reason = ns["bag_image_transport"](str(bag), "")
        assert transport == kind, reason
        assert ns["bag_image_transport"](str(bag), params["camera_namespace"])[0] == kind
        assert ns["bag_image_transport"](str(bag), "/elsewhere")[0] is None
        in_bag = {t["topic_metadata"]["name"] for t in read_metadata(bag)["topics_with_message_count"]}
        node_topics = {image_topic(c, params["camera_namespace"], transport) for c in CAMERA_NAMES}
        assert node_topics <= in_bag, (kind, sorted(in_bag))
    # a file inside the folder works too; a folder without metadata says why
    mcap = next(bags["compressed"].glob("*.mcap"))
    assert ns["bag_image_transport"](str(mcap), "")[0] == "compressed"
    transport, reason = ns["bag_image_transport"](str(tmp_path), "")
    assert transport is None and "metadata.yaml" in reason


def test_auto_transport_sets_the_launch_configuration(bags: dict[str, Path], tmp_path: Path) -> None:
    ns = _exec_with_stubs(REPLAY, {"LaunchConfiguration": _Config,
                                   "SetLaunchConfiguration": lambda name, value: ("set", name, value),
                                   "LogInfo": lambda msg: ("log", msg)})
    ctx = {"image_transport": "auto", "bag": str(bags["compressed"]), "camera_namespace": ""}
    assert ("set", "image_transport", "compressed") in ns["_resolve_image_transport"](ctx)
    assert ("set", "image_transport", "raw") in ns["_resolve_image_transport"](dict(ctx, bag=str(bags["raw"])))
    assert ns["_resolve_image_transport"](dict(ctx, image_transport="raw")) == []  # explicit: kept
    out = ns["_resolve_image_transport"](dict(ctx, bag=str(tmp_path)))
    assert ("set", "image_transport", "") in out and "params_file" in out[0][1]
