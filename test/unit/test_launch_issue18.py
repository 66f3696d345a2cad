"""Launch files, issue 18 defect 7 (static: ``launch`` / ``launch_ros`` are not on PyPI).

(b) ``fastdds_profile:=keep`` keeps the environment's profile; (c) rviz2 only where it is
installed, else a message and the node alone; (d) replay plays the bag when the node logs that
it is ready (``start_delay`` is only the longest wait); (e) a ``namespace`` argument.
"""

from __future__ import annotations

import ast
from pathlib import Path

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


def _args(tree: ast.AST) -> dict[str, object]:
    out = {}
    for c in _calls(tree, "DeclareLaunchArgument"):
        d = _kw(c, "default_value")
        out[c.args[0].value] = d.value if isinstance(d, ast.Constant) else ("expr" if d is not None else None)
    return out


def test_namespace_argument_reaches_the_node() -> None:
    tree = ast.parse(MAIN.read_text())
    assert _args(tree)["namespace"] == ""
    (node,) = [c for c in _calls(tree, "Node") if "qdbev_node" in _strings(_kw(c, "executable"))]
    ns = _kw(node, "namespace")
    assert ns is not None and _strings(ns) == ["namespace"]
    replay = ast.parse(REPLAY.read_text())
    assert _args(replay)["namespace"] == ""
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
    assert float(_args(tree)["start_delay"]) >= 60.0


def test_replay_play_once_logic() -> None:
    """``PlayOnce`` without the launch package: stub its imports, exercise the two paths."""
    import sys
    import types

    stub = {}
    for mod in ("launch", "launch.actions", "launch.conditions", "launch.event_handlers",
                "launch.launch_description_sources", "launch.substitutions", "launch_ros",
                "launch_ros.substitutions"):
        m = types.ModuleType(mod)
        m.__getattr__ = lambda name: (lambda *a, **k: (name, a, k))  # type: ignore[attr-defined]
        stub[mod] = m
    saved = {k: sys.modules.get(k) for k in stub}
    sys.modules.update(stub)
    try:
        ns: dict = {}
        exec(compile(REPLAY.read_text(), str(REPLAY), "exec"), ns)  # noqa: S102 - our own launch file
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    play = ns["PlayOnce"](["play"])
    ev = types.SimpleNamespace(text=b"[INFO] qdbev_node: loading")
    assert play.on_output(ev) is None
    ev.text = f"[INFO] qdbev_node: engine x {ns['READY_MARKER']} on /cameras".encode()
    assert play.on_output(ev) == ["play"]
    assert play.on_output(ev) is None and play.on_timeout(None) == []
    late = ns["PlayOnce"](["play"])
    assert late.on_timeout(None)[-1] == "play" and late.on_output(ev) is None
