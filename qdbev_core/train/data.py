"""Training samples as tensors: reader ``Sample`` -> preprocessed, augmented model inputs.

Every item is a pure function of ``(index, seed)``, so a run resumed from a checkpoint sees
exactly the batches it would have seen without the interruption. The image augmentations draw
from a generator of their own (seeded by the item seed), so turning them on leaves the BEV
augmentation's draws unchanged, and with them off an item is exactly what it always was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.reader import NuScenesReader
from ..runtime.preprocess import ego_motion, prepare_frame
from .augment import (
    BevAugmentConfig,
    CameraAugParams,
    ImageAugConfig,
    apply_bev_transform,
    augment_frame,
    sample_bev_transform,
    sample_camera_aug,
)

if TYPE_CHECKING:
    from .config import TrainConfig

IMAGE_AUG_SEED_SALT = 0x1A6A06
"""Second word of the image augmentations' generator seed ``[item_seed mod 2**32, salt]``."""


@dataclass
class DataConfig:
    """How training samples are prepared.

    ``input_hw`` is the network input (H, W) in pixels; ``augment=None`` disables the BEV
    augmentation; ``temporal`` also returns the previous sample of the scene (for training the
    temporal self-attention); ``max_gt_range_m`` drops GT farther than that from the ego;
    ``image_aug`` (``None`` = off) augments each camera image (photometric distortion, GridMask,
    resize / crop / flip with intrinsics and camera->ego updated; the previous frame of a
    temporal item reuses each camera's resize / crop / flip and draws its own photometric
    distortion and GridMask).
    """

    input_hw: tuple[int, int]
    augment: BevAugmentConfig | None = None
    temporal: bool = False
    max_gt_range_m: float = 60.0
    image_aug: ImageAugConfig | None = None


def data_config_for(cfg: "TrainConfig", input_hw: tuple[int, int]) -> DataConfig:
    """The ``DataConfig`` a training run's ``TrainConfig`` asks for (``input_hw``: model input)."""
    return DataConfig(input_hw=tuple(input_hw), augment=BevAugmentConfig() if cfg.augment else None,
                      temporal=cfg.temporal, image_aug=ImageAugConfig.from_names(cfg.image_aug))


class DetectionDataset(torch.utils.data.Dataset):
    """``dataset[(index, seed)]`` -> dict of tensors for one sample (see ``_item``).

    ``twin``: a reader of the *same* samples rendered in another look (same tables, other
    images; ``qdbev synth`` with the same arguments and another ``--style``). Each item then also
    carries ``twin_img`` (and ``twin_prev_img``): the twin's images through the same BEV transform
    and resize / crop / flip as ``img``, without photometric distortion or GridMask, so the
    intrinsics and camera->ego of ``img`` hold for them too (``train.twin_distill``).
    """

    def __init__(self, reader: NuScenesReader, cfg: DataConfig, twin: NuScenesReader | None = None) -> None:
        self.reader = reader
        self.cfg = cfg
        self.twin = twin
        if twin is not None and list(twin.sample_tokens) != list(reader.sample_tokens):
            raise ValueError(
                f"twin dataset {twin.dataroot} (split {twin.split}) does not hold the samples of {reader.dataroot} "
                f"(split {reader.split}): {len(twin.sample_tokens)} vs {len(reader.sample_tokens)} samples or other "
                "tokens; render it with `qdbev synth` and the same --seed, --scenes, --samples, --image-scale and "
                "--val-fraction, changing only --style")
        index = {t: i for i, t in enumerate(reader.sample_tokens)}
        self._prev = [index.get(reader.nusc.get("sample", t)["prev"], -1) for t in reader.sample_tokens]

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        rng = np.random.default_rng(seed)
        aug = sample_bev_transform(self.cfg.augment, rng) if self.cfg.augment is not None else np.eye(4)
        img_rng = (np.random.default_rng([int(seed) % 2**32, IMAGE_AUG_SEED_SALT])
                   if self.cfg.image_aug is not None else None)
        item = self._item(index, aug, img_rng=img_rng)
        prev = self._prev[index]
        if self.cfg.temporal:
            if prev >= 0:
                p = self._item(prev, aug, with_gt=False, img_rng=img_rng, geometry_of=item.get("_cam_aug"))
                item["prev_img"], item["prev_intrinsics"], item["prev_cam2ego"] = p["img"], p["intrinsics"], p["cam2ego"]
                if "twin_img" in p:
                    item["twin_prev_img"] = p["twin_img"]
                # prev->cur motion expressed in the augmented frames: A M A^-1
                m = aug @ ego_motion(p["_ego2global"], item["_ego2global"]) @ np.linalg.inv(aug)
                item["ego_motion"] = torch.from_numpy(m.astype(np.float32))
                item["has_prev"] = torch.tensor(True)
            else:
                item["prev_img"] = torch.zeros_like(item["img"])
                if "twin_img" in item:
                    item["twin_prev_img"] = torch.zeros_like(item["img"])
                item["prev_intrinsics"], item["prev_cam2ego"] = item["intrinsics"], item["cam2ego"]
                item["ego_motion"] = torch.eye(4)
                item["has_prev"] = torch.tensor(False)
        item.pop("_ego2global")
        item.pop("_cam_aug", None)
        return item

    def camera_aug(self, n_cams: int, img_rng: np.random.Generator,
                   geometry_of: list[CameraAugParams] | None = None) -> list[CameraAugParams]:
        """Draw each camera's image augmentation; ``geometry_of`` fixes resize / crop / flip."""
        cfg = self.cfg.image_aug
        if cfg is None:
            raise ValueError("image augmentation is off (DataConfig.image_aug is None)")
        params = [sample_camera_aug(cfg, img_rng, self.cfg.input_hw, geometry=geometry_of is None)
                  for _ in range(n_cams)]
        if geometry_of is not None:
            params = [replace(p, scale=g.scale, offset=g.offset, flip=g.flip) for p, g in zip(params, geometry_of)]
        return params

    def _item(self, index: int, aug: np.ndarray, with_gt: bool = True, img_rng: np.random.Generator | None = None,
              geometry_of: list[CameraAugParams] | None = None) -> dict:
        s = self.reader[index]
        cam_aug = None
        if img_rng is None:
            net = prepare_frame(s.frame, self.cfg.input_hw)
        else:
            cam_aug = self.camera_aug(len(s.frame.images), img_rng, geometry_of)
            net = augment_frame(s.frame, self.cfg.input_hw, cam_aug)
        gt = np.array(s.gt_boxes, dtype=np.float64, copy=True)
        if len(gt) and len(s.gt_velocity_valid) == len(gt):
            # the devkit has no velocity for single-annotation tracks: NaN keeps them out of the
            # velocity loss terms (a 0 would teach "static")
            gt[~s.gt_velocity_valid, 7:9] = np.nan
        boxes, cam2ego = apply_bev_transform(aug, gt, net.cam2ego.astype(np.float64))
        keep = np.hypot(boxes[:, 0], boxes[:, 1]) <= self.cfg.max_gt_range_m if len(boxes) else np.zeros(0, bool)
        out = {
            "img": torch.from_numpy(net.img),
            "intrinsics": torch.from_numpy(net.intrinsics),
            "cam2ego": torch.from_numpy(cam2ego.astype(np.float32)),
            "index": torch.tensor(index),
            "_ego2global": s.frame.ego2global,
        }
        if cam_aug is not None:
            out["_cam_aug"] = cam_aug
        if self.twin is not None:
            out["twin_img"] = torch.from_numpy(self._twin_image(index, s, cam_aug))
        if with_gt:
            out["gt_boxes"] = torch.from_numpy(boxes[keep].astype(np.float32))
            out["gt_labels"] = torch.from_numpy(s.gt_labels[keep])
        return out

    def _twin_image(self, index: int, sample, cam_aug: list[CameraAugParams] | None) -> np.ndarray:
        """The twin's ``(6, 3, H, W)`` network image of sample ``index``: the geometry of ``cam_aug``
        (resize / crop / flip), no photometric distortion or GridMask. Raises if its rig differs."""
        t = self.twin[index]
        if not (np.allclose(t.frame.intrinsics, sample.frame.intrinsics)
                and np.allclose(t.frame.cam2ego, sample.frame.cam2ego)
                and [im.shape for im in t.frame.images] == [im.shape for im in sample.frame.images]):
            raise ValueError(f"sample {sample.token}: the twin dataset {self.twin.dataroot} has another camera rig "
                             "(intrinsics, extrinsics or image size) than the training images")
        if cam_aug is None:
            return prepare_frame(t.frame, self.cfg.input_hw).img
        plain = [replace(p, photometric=None, gridmask=None) for p in cam_aug]
        return augment_frame(t.frame, self.cfg.input_hw, plain).img


def collate(items: list[dict[str, torch.Tensor]]) -> dict:
    """Stack fixed-size tensors; keep per-sample GT as lists (variable box counts)."""
    out: dict = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = vals if key in ("gt_boxes", "gt_labels") else torch.stack(vals)
    return out
