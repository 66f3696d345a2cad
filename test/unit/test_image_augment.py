"""Per-camera image augmentation: geometry stays exact (GT corners land on the object in the
augmented image), the identity is prepare_frame, photometric ranges, GridMask, determinism,
and off means the batches of before."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from qdbev_core.data.rig import rig_arrays
from qdbev_core.geometry import box_corners, project_points
from qdbev_core.runtime.preprocess import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, prepare_frame
from qdbev_core.train.augment import (
    CameraAugParams,
    ImageAugConfig,
    PhotometricConfig,
    augment_frame,
    gridmask,
    photometric_distort,
    resize_crop_flip,
    sample_camera_aug,
    sample_photometric,
)
from qdbev_core.types import CAMERA_NAMES, Frame

INPUT_HW = (64, 112)


def _pixel_map(uv: np.ndarray, iw: int, ih: int, p: CameraAugParams, input_hw: tuple[int, int]) -> np.ndarray:
    """Where the augmentation sends source pixel coordinates ``uv`` (pixel centres at integers)."""
    h, w = input_hw
    rh, rw = max(1, round(h * p.scale)), max(1, round(w * p.scale))
    u = (uv[..., 0] + 0.5) * rw / iw - 0.5 - p.offset[0]
    v = (uv[..., 1] + 0.5) * rh / ih - 0.5 - p.offset[1]
    if p.flip:
        u = (w - 1) - u
    return np.stack([u, v], -1)


@pytest.mark.parametrize("seed", range(6))
def test_projection_follows_the_pixel_map(seed: int) -> None:
    """For random ego points, projecting with the updated (K, cam2ego) equals mapping the
    original projection through the resize / crop / flip, for every camera."""
    k, t = rig_arrays(0.25)  # 400x225
    rng = np.random.default_rng(seed)
    cfg = ImageAugConfig.from_names("resize-crop-flip")
    cfg.resize_crop_flip.scale_range = (0.7, 1.4)  # pads and crops both
    pts = np.concatenate([rng.uniform(-40, 40, (200, 2)), rng.uniform(-1, 3, (200, 1))], 1)
    for cam in range(6):
        p = sample_camera_aug(cfg, rng, INPUT_HW)
        img = np.zeros((225, 400, 3), np.uint8)
        _, k2, t2 = resize_crop_flip(img, k[cam], t[cam], INPUT_HW, p)
        uv0, d0 = project_points(pts, k[cam], t[cam])
        uv1, d1 = project_points(pts, k2, t2)
        front = d0 > 0.5
        np.testing.assert_allclose(d1, d0, atol=1e-9)
        np.testing.assert_allclose(uv1[front], _pixel_map(uv0[front], 400, 225, p, INPUT_HW), atol=1e-6)
        assert k2[0, 0] > 0 and k2[1, 1] > 0
        assert np.isclose(abs(np.linalg.det(t2[:3, :3])), 1.0)


def test_identity_is_prepare_frame() -> None:
    k, t = rig_arrays(0.25)
    rng = np.random.default_rng(1)
    frame = Frame(images=[rng.integers(0, 256, (225, 400, 3), dtype=np.uint8) for _ in range(6)],
                  intrinsics=k, cam2ego=t, stamp=0.0)
    ref = prepare_frame(frame, INPUT_HW)
    out = augment_frame(frame, INPUT_HW, [CameraAugParams() for _ in range(6)])
    np.testing.assert_array_equal(out.img, ref.img)
    np.testing.assert_array_equal(out.intrinsics, ref.intrinsics)
    np.testing.assert_array_equal(out.cam2ego, ref.cam2ego)


@pytest.fixture(scope="module")
def rendered():
    """One SynthScenes key frame: six rendered cameras with object-id buffers and the GT boxes."""
    from qdbev_core.data.synth import SynthConfig
    from qdbev_core.data.synth.render import Renderer
    from qdbev_core.data.synth.build import build_world
    from qdbev_core.geometry import invert_transform

    cfg = SynthConfig(out=Path("/nonexistent"), scenes=2, samples=2, image_scale=0.15, seed=7)
    world = build_world(cfg, 0)
    ren = Renderer(world, *cfg.image_size())
    t_s = world.sample_time(0)
    objs = world.objects_at(0)
    ego2global = world.ego.matrix(t_s)
    g2e = invert_transform(ego2global)
    images, ids, ks, ts = [], [], [], []
    for name in CAMERA_NAMES:
        res = ren.render(name, t_s, objs)
        images.append(res.image)
        ids.append(res.ids)
        ks.append(ren.cams[name].K)
        ts.append(ren.cams[name].cam2ego)
    boxes = world.boxes(objs, t_s)
    corners = box_corners(boxes)  # global
    corners_ego = corners @ g2e[:3, :3].T + g2e[:3, 3]
    return images, ids, np.stack(ks), np.stack(ts), corners_ego


@pytest.mark.parametrize("seed", range(4))
def test_gt_corners_land_on_the_object_in_the_augmented_image(rendered, seed: int) -> None:
    """Each visible object's pixels, carried through the same resize / crop / flip as the image,
    lie inside the 2D hull of its GT corners projected with the updated intrinsics / extrinsics."""
    images, ids, ks, ts, corners = rendered
    cfg = ImageAugConfig.from_names("resize-crop-flip")
    cfg.resize_crop_flip.scale_range = (0.8, 1.3)
    rng = np.random.default_rng(100 + seed)
    checked = flipped = 0
    for cam in range(6):
        p = sample_camera_aug(cfg, rng, INPUT_HW)
        flipped += p.flip
        for oi in np.unique(ids[cam][ids[cam] >= 0]):
            mask = np.repeat((ids[cam] == oi).astype(np.uint8)[..., None] * 255, 3, axis=2)
            if mask[..., 0].sum() < 255 * 60:
                continue
            warped, k2, t2 = resize_crop_flip(mask, ks[cam], ts[cam], INPUT_HW, p)
            rows, cols = np.nonzero(warped[..., 0] > 127)
            if len(rows) < 5:
                continue  # cropped away
            uv, depth = project_points(corners[oi], k2, t2)
            if (depth <= 0.1).any():
                continue
            inside = ((cols >= uv[:, 0].min() - 1.0) & (cols <= uv[:, 0].max() + 1.0)
                      & (rows >= uv[:, 1].min() - 1.0) & (rows <= uv[:, 1].max() + 1.0))
            assert inside.mean() > 0.97, (cam, oi, p)
            # and the object is where the hull is: its pixel centroid lies in the hull's box
            assert uv[:, 0].min() - 1 <= cols.mean() <= uv[:, 0].max() + 1
            checked += 1
    assert checked >= 3


def test_flip_mirrors_the_image_content(rendered) -> None:
    images, ids, ks, ts, corners = rendered
    p = CameraAugParams(flip=True)
    a, _, _ = resize_crop_flip(images[0], ks[0], ts[0], INPUT_HW, CameraAugParams())
    b, k2, t2 = resize_crop_flip(images[0], ks[0], ts[0], INPUT_HW, p)
    np.testing.assert_array_equal(b, a[:, ::-1])
    assert np.linalg.det(t2[:3, :3]) < 0  # camera x axis mirrored, fx stays positive
    assert k2[0, 0] > 0


def test_photometric_ranges() -> None:
    cfg = PhotometricConfig()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    seen = {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0, "channels": 0}
    for _ in range(300):
        d = sample_photometric(cfg, rng)
        for key in seen:
            seen[key] += key in d
        if "brightness" in d:
            assert -32.0 <= d["brightness"] <= 32.0
        if "contrast" in d:
            assert 0.5 <= d["contrast"] <= 1.5
        if "saturation" in d:
            assert 0.5 <= d["saturation"] <= 1.5
        if "hue" in d:
            assert -18.0 <= d["hue"] <= 18.0
        out = photometric_distort(img, d)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert out.min() >= 0.0 and out.max() <= 255.0
    # each step applied about half the time
    assert all(100 < v < 200 for v in seen.values()), seen
    # single steps do what they say
    grey = np.full((4, 4, 3), 100, np.uint8)
    np.testing.assert_allclose(photometric_distort(grey, {"brightness": 20.0, "contrast_first": True}), 120.0)
    np.testing.assert_allclose(photometric_distort(grey, {"contrast": 1.5, "contrast_first": False}), 150.0)
    np.testing.assert_allclose(photometric_distort(grey, {"hue": 15.0, "saturation": 1.5, "contrast_first": True}),
                               100.0, atol=1e-3)  # greys have no hue or saturation
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    shifted = photometric_distort(red, {"hue": 18.0, "contrast_first": True})
    hsv = cv2.cvtColor(shifted / 255.0, cv2.COLOR_RGB2HSV)
    np.testing.assert_allclose(hsv[..., 0], 18.0, atol=0.05)
    swapped = photometric_distort(red, {"channels": [2, 1, 0], "contrast_first": True})
    np.testing.assert_allclose(swapped[..., 2], 200.0)


def test_gridmask_blanks_blocks_to_the_mean() -> None:
    d, l = 16, 8
    m = gridmask((64, 96), (d, l, 3, 5))
    assert abs(m.mean() - ((d - l) / d) ** 2) < 0.05
    k, t = rig_arrays(0.25)
    frame = Frame(images=[np.full((225, 400, 3), 255, np.uint8)] * 6, intrinsics=k, cam2ego=t, stamp=0.0)
    p = CameraAugParams(gridmask=(d, l, 3, 5))
    out = augment_frame(frame, (64, 96), [p] * 6)
    assert np.all(out.img[:, :, m] == 0.0)  # blanked = ImageNet mean after normalisation
    white = (255.0 - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    np.testing.assert_allclose(out.img[0, :, ~m], np.broadcast_to(white[:, None], (3, (~m).sum())).T, rtol=1e-6)


def test_from_names_and_errors() -> None:
    assert ImageAugConfig.from_names("") is None
    c = ImageAugConfig.from_names("photometric, gridmask")
    assert c.photometric is not None and c.gridmask is not None and c.resize_crop_flip is None
    a = ImageAugConfig.from_names("all")
    assert a.photometric and a.gridmask and a.resize_crop_flip
    assert a.photometric == PhotometricConfig()  # 'all' means the full-strength distortion
    with pytest.raises(ValueError, match="unknown image augmentation.*photometric"):
        ImageAugConfig.from_names("photometric,blur")
    with pytest.raises(ValueError, match="not both"):
        ImageAugConfig.from_names("photometric,photometric-mild")


def test_mild_photometric_keeps_colours_in_a_narrower_range() -> None:
    cfg = ImageAugConfig.from_names("photometric-mild").photometric
    assert cfg == PhotometricConfig.mild()
    rng = np.random.default_rng(1)
    draws = [sample_photometric(cfg, rng) for _ in range(300)]
    assert not any("channels" in d for d in draws)  # never swaps channels
    assert max(abs(d["brightness"]) for d in draws if "brightness" in d) <= 16.0
    assert all(0.75 <= d["contrast"] <= 1.25 for d in draws if "contrast" in d)
    assert all(0.75 <= d["saturation"] <= 1.25 for d in draws if "saturation" in d)
    assert max(abs(d["hue"]) for d in draws if "hue" in d) <= 9.0
    # the config's largest hue shift keeps a red object red (hue stays below orange's ~30 degrees)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    shifted = photometric_distort(red, {"hue": cfg.hue_delta_deg, "contrast_first": True})
    hsv = cv2.cvtColor(shifted / 255.0, cv2.COLOR_RGB2HSV)
    assert float(hsv[0, 0, 0]) < 15.0


@pytest.fixture(scope="module")
def tiny_reader(tmp_path_factory: pytest.TempPathFactory):
    from qdbev_core.data.reader import NuScenesReader
    from qdbev_core.data.synth import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("aug")
    generate_dataset(SynthConfig(out=out, scenes=2, samples=3, image_scale=0.1, seed=3, progress=False))
    return NuScenesReader(out, "v1.0-mini", split="synth_train")


def test_dataset_determinism_and_off_means_before(tiny_reader) -> None:
    from qdbev_core.train.augment import BevAugmentConfig
    from qdbev_core.train.config import TrainConfig
    from qdbev_core.train.data import DataConfig, DetectionDataset, data_config_for

    # the default training config has no image augmentation
    assert data_config_for(TrainConfig(), INPUT_HW).image_aug is None
    base = DataConfig(input_hw=INPUT_HW, augment=BevAugmentConfig(), temporal=True)
    on = data_config_for(TrainConfig(image_aug="all"), INPUT_HW)
    assert on.image_aug is not None and on.augment is not None and on.temporal
    off_ds, on_ds = DetectionDataset(tiny_reader, base), DetectionDataset(tiny_reader, on)
    key = (1, 12345)  # sample 1 has a previous sample
    a, b, c = on_ds[key], on_ds[key], on_ds[(1, 12346)]
    for name in a:
        if isinstance(a[name], torch.Tensor):
            assert torch.equal(a[name], b[name]), name  # same (index, seed) -> same item
    assert not torch.equal(a["img"], c["img"])
    ref = off_ds[key]
    # the BEV augmentation (GT boxes, ego motion) does not depend on the image augmentation
    assert torch.equal(a["gt_boxes"], ref["gt_boxes"]) and torch.equal(a["ego_motion"], ref["ego_motion"])
    assert not torch.equal(a["img"], ref["img"])
    # the previous frame reuses each camera's resize / crop / flip
    assert torch.equal(a["prev_intrinsics"], a["intrinsics"]) and torch.equal(a["prev_cam2ego"], a["cam2ego"])
    # off: exactly prepare_frame + the BEV transform, as before image augmentation existed
    s = tiny_reader[1]
    net = prepare_frame(s.frame, INPUT_HW)
    assert torch.equal(ref["img"], torch.from_numpy(net.img))
    assert torch.equal(ref["intrinsics"], torch.from_numpy(net.intrinsics))


def test_train_cli_flag() -> None:
    import argparse

    from qdbev_core.cli import train as train_cli

    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    args = p.parse_args(["--dataroot", "x", "--out", "y", "--image-aug", "photometric,gridmask"])
    assert args.image_aug == "photometric,gridmask"
    assert p.parse_args(["--dataroot", "x", "--out", "y"]).image_aug == ""
    with pytest.raises(SystemExit, match="unknown image augmentation"):
        train_cli.check_image_aug("sepia")


def test_trainer_feeds_the_augmented_images(synth_dataroot, tmp_path) -> None:
    """`TrainConfig.image_aug` reaches the training batches: the same seed and step give another loss."""
    from qdbev_core.train.config import TrainConfig
    from qdbev_core.train.trainer import read_metrics, train

    def first_loss(out, aug: str) -> float:
        cfg = TrainConfig(model="nano", dataroot=synth_dataroot, split="synth_train", out=out, steps=1, batch_size=1,
                          warmup_steps=0, ckpt_every=10, log_every=1, eval_split=None, num_workers=0, threads=1,
                          image_aug=aug, model_overrides={"num_queries": 30, "image_size": (64, 176), "bev_h": 16,
                                                          "bev_w": 16})
        train(cfg, progress=False)
        return float(next(r for r in read_metrics(out / "metrics.csv") if r.get("loss"))["loss"])

    plain, again = first_loss(tmp_path / "a", ""), first_loss(tmp_path / "b", "")
    assert plain == again  # deterministic without augmentation
    assert first_loss(tmp_path / "c", "all") != plain
