"""SynthScenes appearance styles: the default look is byte-identical, styles repaint only the
images, every style renders all ten classes where their boxes project, colours stop naming the class."""

from __future__ import annotations

import colorsys
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from qdbev_core.classes import CLASS_NAMES
from qdbev_core.types import CAMERA_NAMES

TINY = dict(scenes=2, samples=3, image_scale=0.1, seed=3, progress=False)
# sha256 over (relative path, sha256 of the bytes) of every file of the TINY dataset, generated
# with the code from before styles existed (commit 022664d). JPEG bytes depend on the libraries.
DEFAULT_TINY_SHA256 = "7387692fed69880c3c836b818c4782de74c2e9297e0bb4eb20074515f4cc7d8d"
HASHED_WITH = {"numpy": "1.26.4", "cv2": "4.11.0"}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for rel, digest in _digests(root).items():
        h.update(rel.encode())
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qdbev_core.data.synth import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("default")
    generate_dataset(SynthConfig(out=out, **TINY))
    return out


def test_default_style_is_byte_identical_to_before(tiny_default: Path) -> None:
    if (np.__version__, cv2.__version__) != (HASHED_WITH["numpy"], HASHED_WITH["cv2"]):
        pytest.skip(f"reference hash made with numpy {HASHED_WITH['numpy']} / OpenCV {HASHED_WITH['cv2']}, "
                    f"here {np.__version__} / {cv2.__version__} (JPEG bytes may differ)")
    assert _tree_hash(tiny_default) == DEFAULT_TINY_SHA256
    meta = json.loads((tiny_default / "v1.0-mini" / "synth_meta.json").read_text())
    assert "style" not in meta["config"]


def test_style_changes_only_images_and_cli(tiny_default: Path, tmp_path: Path) -> None:
    from qdbev_core.cli import main as cli_main

    out = tmp_path / "random"
    rc = cli_main.main(["synth", "--out", str(out), "--scenes", "2", "--samples", "3", "--image-scale", "0.1",
                        "--seed", "3", "--no-progress", "--style", "random"])
    assert rc == 0
    a, b = _digests(tiny_default), _digests(out)
    assert a.keys() == b.keys()
    for rel in a:
        if rel.endswith(".jpg"):
            assert a[rel] != b[rel], rel
        elif not rel.endswith("synth_meta.json"):
            assert a[rel] == b[rel], f"{rel}: a style must not change tables, lidar or maps"
    meta = json.loads((out / "v1.0-mini" / "synth_meta.json").read_text())
    assert meta["config"]["style"]["name"] == "random"
    # "default" by name is the unstyled code path
    assert cli_main.main(["synth", "--out", str(tmp_path / "d"), "--scenes", "2", "--samples", "3",
                          "--image-scale", "0.1", "--seed", "3", "--no-progress", "--style", "default"]) == 0
    assert _digests(tmp_path / "d") == a


def test_style_resolution_and_errors(tmp_path: Path) -> None:
    from qdbev_core.data.synth import SynthConfig
    from qdbev_core.data.synth.style import STYLES, SynthStyle, resolve_style

    assert resolve_style("default") is None and resolve_style(None) is None
    assert resolve_style("dusk") is STYLES["dusk"]
    with pytest.raises(ValueError, match="unknown style 'sepia'.*overcast"):
        resolve_style("sepia")
    with pytest.raises(ValueError, match="exposure must be a \\(low, high\\) range"):
        SynthStyle(name="bad", exposure=(1.2, 0.8))
    with pytest.raises(ValueError, match="object_colors"):
        SynthStyle(object_colors="plaid")
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"object_colors": "random", "noise_std": [4, 6]}))
    st = resolve_style(str(f))
    assert st.name == "mine" and st.noise_std == (4.0, 6.0)
    # a mixed style leaves some scenes in the default look (the same worlds as unstyled)
    from qdbev_core.data.synth.build import build_world

    looks = [build_world(SynthConfig(out=tmp_path, scenes=6, samples=1, seed=1, style="random-mix"), i).look
             for i in range(6)]
    assert any(lk is None for lk in looks) and any(lk is not None for lk in looks)
    # a config rebuilt from synth_meta.json's dict gets the same style back
    cfg = SynthConfig(out=tmp_path, style="harsh")
    again = SynthConfig(out=tmp_path, **json.loads(json.dumps(cfg.content_dict())))
    assert again.style == cfg.style


@pytest.mark.parametrize("style", ["default", "overcast", "dusk", "harsh", "swapped", "random"])
def test_each_style_renders_all_classes_where_boxes_project(style: str) -> None:
    """Every class has an object whose rendered pixels lie inside its projected GT box, are neither
    black nor blown out, and (for a style) differ from the default look's pixels."""
    from qdbev_core.data.synth import SynthConfig
    from qdbev_core.data.synth.generate import sensor_noise_seed
    from qdbev_core.data.synth.render import Renderer
    from qdbev_core.data.synth.build import build_world
    from qdbev_core.geometry import box_corners, project_points

    cfg = SynthConfig(out=Path("/nonexistent"), scenes=2, samples=4, image_scale=0.12, seed=7, style=style,
                      progress=False)
    world = build_world(cfg, 0)
    plain = build_world(SynthConfig(out=Path("/nonexistent"), scenes=2, samples=4, image_scale=0.12, seed=7,
                                    progress=False), 0)
    assert [o.token for o in world.objects] == [o.token for o in plain.objects]  # same scene
    renderer, plain_renderer = Renderer(world, *cfg.image_size()), Renderer(plain, *cfg.image_size())
    good: dict[str, int] = {}
    for k in range(world.n_samples):
        objs = world.objects_at(k)
        t = world.sample_time(k)
        ego2global = world.ego.matrix(t)
        for ci, cam_name in enumerate(CAMERA_NAMES):
            res = renderer.render(cam_name, t, objs, noise_seed=sensor_noise_seed(world, k, ci))
            ref = plain_renderer.render(cam_name, t, plain.objects_at(k), noise_seed=sensor_noise_seed(plain, k, ci))
            assert np.array_equal(res.ids, ref.ids)  # geometry and occlusion are the default look's
            cam = renderer.cams[cam_name]
            for oi, obj in enumerate(objs):
                mask = res.ids == oi
                if mask.sum() < 12:
                    continue
                uv, depth = project_points(box_corners(obj.box(t)[None])[0], cam.K, ego2global @ cam.cam2ego)
                if (depth <= 0.05).any():
                    continue
                rows, cols = np.nonzero(mask)
                inside = ((cols >= uv[:, 0].min() - 1.5) & (cols <= uv[:, 0].max() + 1.5)
                          & (rows >= uv[:, 1].min() - 1.5) & (rows <= uv[:, 1].max() + 1.5))
                assert inside.all(), f"{style}: {obj.cls} pixels outside its projected box"
                px = res.image[mask].astype(np.float64)
                if not 6.0 < px.mean() < 250.0:
                    continue
                if style != "default" and np.abs(px - ref.image[mask]).mean() < 2.0:
                    continue
                good[obj.cls] = good.get(obj.cls, 0) + 1
    missing = [c for c in CLASS_NAMES if c not in good]
    assert not missing, f"style {style}: no visible, in-box, repainted pixels for {missing}"


def test_random_style_colours_do_not_name_the_class() -> None:
    from qdbev_core.data.synth import SynthConfig
    from qdbev_core.data.synth.build import build_world

    hues: dict[str, list[float]] = {}
    for style in ("default", "random"):
        cfg = SynthConfig(out=Path("/nonexistent"), scenes=3, samples=4, image_scale=0.1, seed=2, style=style)
        for i in range(3):
            for obj in build_world(cfg, i).objects:
                if obj.cls in ("bus", "traffic_cone", "construction_vehicle"):
                    r, g, b = (np.asarray(obj.style["body"]) / 255.0).tolist()
                    hues.setdefault(f"{style}/{obj.cls}", []).append(colorsys.rgb_to_hsv(r, g, b)[0] * 360.0)
    pooled = []
    for cls in ("bus", "traffic_cone", "construction_vehicle"):
        assert np.ptp(hues[f"default/{cls}"]) < 20.0  # the default look: one colour per class
        assert np.ptp(hues[f"random/{cls}"]) > 45.0, cls  # deterministic draws; a handful per class
        pooled += hues[f"random/{cls}"]
    assert np.ptp(pooled) > 180.0
